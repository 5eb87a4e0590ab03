"""No SSRF: outside development a webhook goes to a public https address only, checked at
registration and again at every delivery (which connects to the address it checked)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from sqlalchemy import select

from catalog.db import utcnow, write_transaction
from catalog.ids import new_id
from catalog.notifications import addresses
from catalog.notifications.dispatcher import Dispatcher
from catalog.notifications.models import WebhookDelivery, WebhookEndpoint
from catalog.notifications.signing import seal_secret
from tests.conftest import make_settings
from tests.support import Actors, problem


@pytest.fixture(name="settings")
def fx_settings(database: str, tmp_path: Path):
    return make_settings(tmp_path, database)  # env "test": private addresses refused, as in production


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://example.com/hooks", "webhook_url_insecure"),
        ("https://127.0.0.1/hooks", "webhook_url_forbidden"),
        ("https://localhost:8443/hooks", "webhook_url_forbidden"),
        ("https://10.1.2.3/hooks", "webhook_url_forbidden"),
        ("https://192.168.0.10/hooks", "webhook_url_forbidden"),
        ("https://169.254.169.254/latest/meta-data/", "webhook_url_forbidden"),
        ("https://100.100.100.200/", "webhook_url_forbidden"),
        ("https://[::1]/hooks", "webhook_url_forbidden"),
        ("https://[fd00:ec2::254]/", "webhook_url_forbidden"),
        ("https://[::ffff:127.0.0.1]/", "webhook_url_forbidden"),
        ("https://0.0.0.0/", "webhook_url_forbidden"),
        ("https://[64:ff9b::a00:1]/", "webhook_url_forbidden"),  # NAT64 of 10.0.0.1
        ("https://[2002:c0a8:1::1]/", "webhook_url_forbidden"),  # 6to4 of 192.168.0.1
        ("https://" + "a" * 64 + ".example/", "webhook_url_invalid"),  # a label too long for DNS
        ("https://ex.ample..com/", "webhook_url_invalid"),
        ("https://user:pw@example.com/", "webhook_url_invalid"),
        ("ftp://example.com/", "webhook_url_invalid"),
    ],
)
async def test_registration_refuses_non_public_addresses(client, actors: Actors, url, code):
    admin = await actors.org("consumer")
    body = problem(
        await client.post(f"/v1/orgs/{admin.org_id}/webhooks", json={"url": url}, headers=admin.headers), 422, code
    )
    assert body["errors"][0]["field"] == "url"


async def test_delivery_refuses_an_address_that_turned_private(app, settings, actors: Actors, catalogue):
    """An endpoint whose name now resolves inside (DNS rebinding) is not called: the try fails."""
    provider = await actors.org("provider")
    sealed, nonce = seal_secret(settings.key_pepper, "whsec_" + "A" * 43)
    async with write_transaction(app.state.sessions) as session:
        session.add(
            WebhookEndpoint(
                id=new_id("wep"),
                org_id=provider.org_id,
                url="https://localhost:9/hooks",  # a name that resolves to loopback when called
                event_types=None,
                enabled=True,
                secret_sealed=sealed,
                secret_nonce=nonce,
                created_at=utcnow(),
                updated_at=utcnow(),
            )
        )
    await catalogue.listed(provider)
    dispatcher = Dispatcher(app.state.sessions, pepper=settings.key_pepper, timeout_s=1, allow_private=False)
    assert await dispatcher.run_once() == 1
    async with write_transaction(app.state.sessions) as session:
        row = (await session.execute(select(WebhookDelivery))).scalar_one()
    assert row.status == "pending" and row.last_error.startswith("webhook_url_forbidden")
    assert row.last_status_code is None


def test_pinning_keeps_the_name_for_host_and_tls():
    url, headers, extensions = addresses.pinned(
        "https://hooks.example.com:8443/x?y=1", ipaddress.ip_address("93.184.216.34")
    )
    assert url == "https://93.184.216.34:8443/x?y=1"
    assert headers == {"host": "hooks.example.com:8443"} and extensions == {"sni_hostname": "hooks.example.com"}
    url, _, _ = addresses.pinned("https://h.example/", ipaddress.ip_address("2606:2800:220:1::1"))
    assert url == "https://[2606:2800:220:1::1]/"
