"""Example request bodies of the notifications API, by operation (``catalog/openapi.py``)."""

from __future__ import annotations

from litestar.openapi.spec import Example

CREATE_WEBHOOK = {
    "licence_events": Example(
        summary="A receiver for the licence events that need action",
        value={
            "url": "https://hooks.example-pharma.com/lode",
            "event_types": ["licence.offered", "licence.expiring", "licence.suspended", "licence.revoked"],
            "description": "Data office: licences to accept, renew or stop using",
        },
    ),
    "everything": Example(summary="Every event type", value={"url": "https://hooks.example-pharma.com/lode/all"}),
}
UPDATE_WEBHOOK = {
    "re_enable": Example(summary="Resume an endpoint Lode disabled", value={"enabled": True}),
    "all_types": Example(summary="Subscribe to every event type", value={"event_types": None}),
}
MARK_READ = {
    "some": Example(summary="These notifications", value={"ids": ["msg_01M95V740S4K55QS9BRKCGX6AP"]}),
    "all": Example(summary="Everything up to now", value={"all": True}),
}
