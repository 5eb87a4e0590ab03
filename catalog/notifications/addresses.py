"""Where a webhook may be sent: no SSRF into Lode's own network.

Outside development an endpoint's URL must be https, and every address its host resolves to must be
a public one: loopback, private, shared (CGNAT), link-local (which holds the clouds' metadata service,
169.254.169.254), multicast, reserved and unspecified addresses are refused, IPv4-mapped IPv6 by the
address it maps. The check runs at registration and again at every delivery, and the delivery then
connects to the very address it checked (the URL's host stays in ``Host`` and in TLS's SNI and
certificate check), so a DNS answer that changes between the check and the connection
("rebinding") cannot steer it elsewhere.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refused(Exception):
    """The URL may not be called; ``code`` is the problem code a registration answers with."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def parse(url: str, *, allow_private: bool) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL Lode may call, or Refused."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Refused("webhook_url_invalid", f"not a URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused("webhook_url_invalid", "must be an http(s) URL with a host")
    if parts.username or parts.password:
        raise Refused("webhook_url_invalid", "must not carry credentials; the signature authenticates Lode")
    if parts.fragment:
        raise Refused("webhook_url_invalid", "must not have a fragment")
    if not allow_private and parts.scheme != "https":
        raise Refused("webhook_url_insecure", "must be https")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


NAT64 = ipaddress.ip_network("64:ff9b::/96")


def forbidden(address: IPAddress) -> bool:
    """Not a public address — judged by the IPv4 address an IPv6 one carries (mapped, 6to4, NAT64)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        elif address.sixtofour is not None:
            address = address.sixtofour
        elif address in NAT64:
            address = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return not address.is_global or address.is_multicast


async def resolve(host: str, port: int) -> list[IPAddress]:
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [literal]
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError as exc:  # a label too long or empty: not a name at all
        raise Refused("webhook_url_invalid", f"{host!r} is not a valid host name") from exc
    except OSError as exc:
        raise Refused("webhook_url_unresolvable", f"{host} does not resolve: {exc}") from exc
    found = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))
    if not found:
        raise Refused("webhook_url_unresolvable", f"{host} does not resolve")
    return found


async def checked_address(url: str, *, allow_private: bool) -> IPAddress | None:
    """The public address to connect to (None when private addresses are allowed), or Refused."""
    _, host, port = parse(url, allow_private=allow_private)
    if allow_private:
        return None
    addresses = await resolve(host, port)
    bad = [str(a) for a in addresses if forbidden(a)]
    if bad:
        raise Refused("webhook_url_forbidden", f"{host} resolves to a non-public address ({', '.join(bad)})")
    return addresses[0]


def pinned(url: str, address: IPAddress | None) -> tuple[str, dict[str, str], dict[str, str]]:
    """The URL to request with its host replaced by the checked address, the ``Host`` header and
    the request extensions (SNI) that keep the original name for the server and its certificate."""
    if address is None:
        return url, {}, {}
    parts = urlsplit(url)
    host = parts.hostname or ""
    literal = f"[{address}]" if address.version == 6 else str(address)
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    target = parts._replace(netloc=netloc).geturl()
    header = host if parts.port is None else f"{host}:{parts.port}"
    return target, {"host": header}, ({"sni_hostname": host} if parts.scheme == "https" else {})
