"""Lode from Python: ``Client`` and ``AsyncClient`` over Lode's HTTP API.

from lode_client import Client
with Client() as lode:
    licence = next(iter(lode.licences.list(status="active")))
    answer = lode.licences.query(licence.id, {"table": "visits", "group_by": ["sex"],
                                              "aggregates": [{"fn": "count"}]})
    frame = answer.to_pandas()          # frame.attrs["lode"]: what disclosure control did
"""

from lode_client import errors
from lode_client.answer import Answer
from lode_client.client import AsyncClient, Client
from lode_client.transport import VERSION as __version__

__all__ = ["Answer", "AsyncClient", "Client", "__version__", "errors"]
