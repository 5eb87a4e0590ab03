"""``Client`` and ``AsyncClient``: the same resources, answered synchronously or awaited.

from lode_client import Client
lode = Client()                      # LODE_URL / LODE_API_KEY, else the default profile
for product in lode.products.iter("糖尿病", grade="L3"):
    print(product.slug, product.title)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from lode_client import config, models
from lode_client.download import download_async, download_sync
from lode_client.resources import (
    Applications,
    Licences,
    Notifications,
    Payments,
    Products,
    Releases,
    Usage,
    Webhooks,
)
from lode_client.transport import USER_AGENT, AsyncTransport, Call, Retry, SyncTransport

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0, read=120.0)


class BaseClient:
    _transport: Any

    def _setup(self, url: str | None, api_key: str | None, profile: str | None, retries: int) -> dict[str, Any]:
        settings = config.resolve(url, api_key, profile)
        self.url = settings.url
        self.profile = settings.profile
        self.retry = Retry(attempts=retries)
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if settings.api_key:
            headers["Authorization"] = f"Bearer {settings.api_key}"
        self.products = Products(self)
        self.releases = Releases(self)
        self.applications = Applications(self)
        self.licences = Licences(self)
        self.usage = Usage(self)
        self.payments = Payments(self)
        self.notifications = Notifications(self)
        self.webhooks = Webhooks(self)
        return {"base_url": settings.url, "headers": headers}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}{f' profile={self.profile}' if self.profile else ''}>"


class Client(BaseClient):
    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        profile: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retries: int = 4,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        options = self._setup(url, api_key, profile, retries)
        self._http = httpx.Client(**options, timeout=timeout, transport=transport)
        self._transport = SyncTransport(self._http, self.retry)

    def me(self) -> Any:
        return self._transport.run(Call("GetMe", into=models.Me))

    def _download(self, licence_id: str, name: str, dest: Path, **options: Any) -> Path:
        return download_sync(self._http, licence_id, name, dest, **options)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(BaseClient):
    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        profile: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retries: int = 4,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        options = self._setup(url, api_key, profile, retries)
        self._http = httpx.AsyncClient(**options, timeout=timeout, transport=transport)
        self._transport = AsyncTransport(self._http, self.retry)

    async def me(self) -> Any:
        return await self._transport.run(Call("GetMe", into=models.Me))

    async def _download(self, licence_id: str, name: str, dest: Path, **options: Any) -> Path:
        return await download_async(self._http, licence_id, name, dest, **options)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
