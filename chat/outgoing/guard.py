"""The SSRF guard: a webhook URL must be http(s), carry no credentials, and resolve only to
public addresses.

A host is refused if ANY address it resolves to is loopback, private, link-local,
multicast, unspecified, reserved or otherwise not globally routable (IPv4-mapped, 6to4 and
Teredo IPv6 forms are judged by the IPv4 address inside), unless CHAT_WEBHOOK_ALLOW_PRIVATE
is on or the address is in CHAT_WEBHOOK_ALLOW_NETWORKS. The client connects to the very
addresses checked here (no second lookup), so a DNS answer cannot change between the check
and the connection (DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from urllib.parse import SplitResult, urlsplit

from django.conf import settings

from .. import protocol

MAX_URL = 2000
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refused(Exception):
    """The URL may not be reached; ``str()`` says why, for the caller's error or the attempt's record."""


def validate_url(url: str) -> SplitResult:
    """Return ``url`` split, or raise Refused: not a string, over MAX_URL characters, not
    http or https, no host, credentials in it, a bad port, spaces or control characters."""
    if not isinstance(url, str) or not url:
        raise Refused("The URL is missing.")
    if len(url) > MAX_URL:
        raise Refused(f"The URL is longer than {MAX_URL} characters.")
    if not protocol.text_storable(url) or any(c.isspace() or not c.isprintable() for c in url):
        raise Refused("The URL contains spaces or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Refused(f"The URL is malformed: {exc}.") from None
    if parts.scheme not in ("http", "https"):
        raise Refused("The URL must start with http:// or https://.")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise Refused("The URL may not contain a user name or password.")
    if not parts.hostname:
        raise Refused("The URL has no host.")
    if port == 0:
        raise Refused("The URL's port must be 1-65535.")
    return parts


def _embedded_ipv4(ip: Address) -> ipaddress.IPv4Address | None:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip.teredo is not None:
            return ip.teredo[1]
    return None


def address_problem(ip: Address) -> str | None:
    """What makes ``ip`` unfit for a webhook ("a loopback address" …), or None for a public one.

    Ignores the settings; address_refusal() applies them.
    """
    inner = _embedded_ipv4(ip)
    if inner is not None:
        return address_problem(inner)  # the IPv4 address inside is where the packets go
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_reserved:
        return "a reserved address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global:
        return "an address that is not public"
    return None


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(n.strip(), strict=False) for n in settings.CHAT_WEBHOOK_ALLOW_NETWORKS if n.strip()]


def address_refusal(ip: Address) -> str | None:
    """Why ``ip`` is refused under the settings, or None if it may be reached."""
    if settings.CHAT_WEBHOOK_ALLOW_PRIVATE:
        return None
    problem = address_problem(ip)
    if problem is None:
        return None
    candidates = [ip] + ([inner] if (inner := _embedded_ipv4(ip)) is not None else [])
    networks = _allowed_networks()
    if any(c in n for c in candidates for n in networks if c.version == n.version):
        return None
    return problem


Resolver = Callable[..., list]


def resolve_checked(host: str, port: int, *, resolver: Resolver = socket.getaddrinfo) -> list[tuple[int, str]]:
    """Resolve ``host`` and return its (family, address) pairs, each one allowed; raise Refused
    if it does not resolve or if any address is refused. ``resolver`` is getaddrinfo's shape."""
    try:
        infos = resolver(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise Refused(f"The host {host!r} does not resolve ({exc}).") from None
    found: list[tuple[int, str]] = []
    for family, _type, _proto, _name, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        text = sockaddr[0].split("%", 1)[0]  # an IPv6 zone ("fe80::1%eth0") is not part of the address
        ip = ipaddress.ip_address(text)
        refusal = address_refusal(ip)
        if refusal is not None:
            raise Refused(f"The host {host!r} resolves to {refusal} ({ip}), which webhooks may not reach.")
        if (family, text) not in found:
            found.append((family, text))
    if not found:
        raise Refused(f"The host {host!r} does not resolve.")
    return found


def url_checked(url: str, *, resolver: Resolver = socket.getaddrinfo) -> tuple[SplitResult, list[tuple[int, str]]]:
    """validate_url() then resolve_checked() of its host: the URL split and the addresses to
    connect to. Raise Refused."""
    parts = validate_url(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts, resolve_checked(parts.hostname, port, resolver=resolver)
