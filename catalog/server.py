"""The HTTP/1.1 protocol `lode serve` runs uvicorn with: h11, refusing what it cannot parse as
problem+json.

uvicorn's parser refuses a request it cannot parse — raw UTF-8 in the request line, a malformed
header — before Lode's app ever sees it, and answers in text/plain. Clients of Lode read every
error as RFC 9457 problem+json with a stable ``code``, so this protocol answers that refusal the
same way: 400 ``malformed_request``, a request id, and a hint that fixes the commonest cause (an
unencoded query such as ``?q=糖尿病``). uvicorn offers no hook for it but the protocol class, so
this subclasses its h11 protocol and overrides the one method that writes the refusal; the test
(tests/test_server.py) runs a real uvicorn so an upgrade that moves it fails there.
"""

from __future__ import annotations

import uuid

import h11
import msgspec
from uvicorn.protocols.http.h11_impl import H11Protocol

from catalog.errors import PROBLEM_MEDIA_TYPE

CODE = "malformed_request"
DETAIL = (
    "The request could not be parsed as HTTP/1.1. A request line is ASCII only: percent-encode "
    "anything else in the path or query (with curl: -G --data-urlencode 'q=…')."
)


def refusal_body(request_id: str) -> bytes:
    return msgspec.json.encode(
        {
            "type": f"urn:lode:problem:{CODE}",
            "title": "Bad Request",
            "status": 400,
            "code": CODE,
            "detail": DETAIL,
            "request_id": request_id,
        }
    )


class ProblemH11Protocol(H11Protocol):
    def send_400_response(self, msg: str) -> None:
        request_id = uuid.uuid4().hex
        body = refusal_body(request_id)
        headers = [
            (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", request_id.encode()),
            (b"connection", b"close"),
        ]
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"), h11.Data(data=body)):
            self.transport.write(self.conn.send(event))
        self.transport.write(self.conn.send(h11.EndOfMessage()))
        self.transport.close()
