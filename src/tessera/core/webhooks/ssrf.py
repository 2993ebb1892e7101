"""Outbound URL safety: webhooks never reach the installation's own network.

After DNS resolution every address must be public: loopback, private (RFC 1918, ULA),
link-local (cloud metadata at 169.254.169.254), multicast, reserved and unspecified addresses
are refused unless ``settings.webhook_allow_private`` (tests, closed installations). The
resolved address is checked just before each delivery; a DNS answer that changes between the
check and the connection (rebinding) remains a residual risk documented for operators.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from tessera.settings import get_settings


class UnsafeUrl(ValueError):
    """The URL is not an acceptable webhook destination."""


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_public(ip: Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return is_public(ip.ipv4_mapped)
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def check_syntax(url: str) -> tuple[str, int, str]:
    """Scheme, host and port of an http(s) URL without credentials; raises :class:`UnsafeUrl`."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeUrl("the URL must use http or https")
    if not parts.hostname:
        raise UnsafeUrl("the URL has no host")
    if parts.username or parts.password:
        raise UnsafeUrl("the URL must not contain credentials")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80), parts.scheme


def check_literal(url: str, *, allow_private: bool | None = None) -> None:
    """Refuse a URL whose host is a non-public IP literal (used when saving an endpoint)."""
    host, _port, _ = check_syntax(url)
    allow = get_settings().webhook_allow_private if allow_private is None else allow_private
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        h = host.lower().rstrip(".")
        if not allow and (h in ("localhost", "localhost.localdomain") or h.endswith(".localhost")):
            raise UnsafeUrl("the URL points to this machine") from None
        return
    if not allow and not is_public(ip):
        raise UnsafeUrl(f"the address {ip} is not public")


async def resolve_public(url: str, *, allow_private: bool | None = None) -> list[Address]:
    """Resolve the URL's host and refuse it unless every address is public."""
    host, port, _ = check_syntax(url)
    allow = get_settings().webhook_allow_private if allow_private is None else allow_private
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UnsafeUrl(f"cannot resolve {host}: {exc}") from None
    addrs: list[Address] = []
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not allow and not is_public(ip):
            raise UnsafeUrl(f"{host} resolves to {ip}, which is not a public address")
        addrs.append(ip)
    if not addrs:
        raise UnsafeUrl(f"cannot resolve {host}")
    return addrs
