"""Example request bodies of the metering API (``catalog/openapi.py``)."""

from __future__ import annotations

from litestar.openapi.spec import Example

LICENCE = "lic_01M95JFS8J0SFV9FPAYWD0WPWX"
ANALYST = "usr_01M95JFS82W3TQ87H4DWSVDSHZ"

INGEST_USAGE_EVENTS = {
    "batch": Example(
        summary="Rows and a download delivered by the provider's own enclave",
        value={
            "events": [
                {
                    "idempotency_key": "enclave-q-20261202-0001",
                    "licence_id": LICENCE,
                    "dimension": "rows_returned",
                    "quantity": 250,
                    "occurred_at": "2026-12-02T08:00:00Z",
                    "analyst_id": ANALYST,
                },
                {
                    "idempotency_key": "enclave-d-20261202-0002",
                    "licence_id": LICENCE,
                    "dimension": "bytes_downloaded",
                    "quantity": 18874368,
                    "occurred_at": "2026-12-02T08:05:12+08:00",
                },
            ]
        },
    ),
}
