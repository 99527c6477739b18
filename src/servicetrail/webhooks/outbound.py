"""Where a webhook may be sent (issue 13 item 4): `https://` only, and never to an address
inside the operator's own networks (loopback, private, link-local, and every other range
that is not globally routable), checked on the addresses the name resolves to, at creation
and again at each delivery, which then connects to the very address it checked (a DNS
answer that changes between the check and the connection cannot move it).

SERVICETRAIL_WEBHOOK_ALLOW_LOOPBACK=1 lets webhooks go to loopback addresses, over `http://`
too (and `http://` to nothing else): for local receivers and the tests. Private and
link-local ranges stay refused.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from .. import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# IANA's special-purpose ranges that are not globally reachable and that Python 3.11's
# tables still call global (audit of webhooks, session 18): IETF protocol assignments (but
# for two anycast services), the deprecated 6to4 relay anycast, IPv6 documentation (RFC 9637)
_ALSO_NOT_GLOBAL = tuple(
    ipaddress.ip_network(n) for n in ("192.0.0.0/24", "192.88.99.0/24", "3fff::/20")
)
_GLOBAL_ANYCAST = frozenset(ipaddress.ip_address(a) for a in ("192.0.0.9", "192.0.0.10"))


class UnsafeUrl(ValueError):
    """A webhook URL that may not be called; the message says why, for the person who gave it."""


NAME_REFUSED = "it does not resolve, or not to public addresses alone"


class Unresolved(UnsafeUrl):
    """A host name that does not resolve (now): a delivery cannot go, a watch may still be made."""


def loopback_allowed() -> bool:
    return settings.current().webhook_allow_loopback == "1"


@dataclass(frozen=True, slots=True)
class Target:
    """A webhook URL taken apart: what to resolve, and what to ask for once connected."""

    scheme: str
    host: str
    port: int
    target: str  # path and query, as sent in the request line

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return shown if self.port == default else f"{shown}:{self.port}"


def parse_url(url: str, allow_loopback: bool | None = None) -> Target:
    """The URL's form: https (or http with loopback allowed), a host, no user or password."""
    allow = loopback_allowed() if allow_loopback is None else allow_loopback
    if not isinstance(url, str) or not url.isascii() or not url.isprintable() or " " in url:
        raise UnsafeUrl(
            "the URL must be printable ASCII without spaces (IDNA-encode a non-ASCII host)"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise UnsafeUrl(f"not a URL: {e}") from None
    if port == 0:  # not "no port": it would have gone to the scheme's
        raise UnsafeUrl("not a URL: its port must be 1-65535")
    scheme = parts.scheme.lower()
    if scheme != "https" and not (scheme == "http" and allow):
        raise UnsafeUrl("the URL must start with https://")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("the URL must not carry a user name or password")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UnsafeUrl("the URL has no host")
    if "%" in host and ":" in host:
        # an IPv6 zone: `[fe80::1%25eth0]` named no interface the resolver knew, so the
        # address was never checked, and the watch was made (audit of webhooks, session 18)
        raise UnsafeUrl("the URL's host must not name an IPv6 zone (%)")
    if "%" in host:  # `exa%6dple.com` was refused as naming an IPv6 zone (audit 51d)
        raise UnsafeUrl("the URL's host must be written as it is, not %-escaped")
    host = _address_as_written(host) or host
    if not allow and (host.lower() == "localhost" or host.lower().endswith(".localhost")):
        raise UnsafeUrl("webhooks may not be sent to localhost")  # RFC 6761: always loopback
    if parts.fragment:
        raise UnsafeUrl("the URL must not have a #fragment")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(scheme, host, port or (443 if scheme == "https" else 80), target)


_NUMERIC_HOST = re.compile(r"[0-9a-fA-FxX.]+")


def _address_as_written(host: str) -> str | None:
    """An address host in its one usual spelling (`127.1`, `2130706433`, `0x7f.1` and
    `127.0.0.1` are one address to the resolver, as are IPv6's many spellings), or None for a
    name. A receiver's limits are counted by its host, so a Party that spelt one receiver four
    ways got four receivers' share of the worker."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if _NUMERIC_HOST.fullmatch(host):  # inet_aton reads a digit prefix and ignores the rest
        try:
            return socket.inet_ntoa(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _embedded(address: IPAddress) -> IPAddress | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64), which is where it goes."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal(address: IPAddress, allow_loopback: bool | None = None) -> str | None:
    """Why a webhook may not go to this address, or None when it may."""
    allow = loopback_allowed() if allow_loopback is None else allow_loopback
    inner = _embedded(address)
    if inner is not None:
        return refusal(inner, allow)
    if address.is_loopback:
        return None if allow else f"{address} is a loopback address"
    if address.is_link_local:
        return f"{address} is a link-local address"
    if address.is_private:
        return f"{address} is a private address"
    # is_global alone is not enough on Python 3.11: it holds for fec0::/10 (site-local), ::/96
    # (IPv4-compatible), ::ffff:0:0:0/96 (IPv4-translated) and 64:ff9b:1::/48 (local NAT64),
    # which is_reserved or is_site_local flag
    site_local = isinstance(address, ipaddress.IPv6Address) and address.is_site_local
    if address.is_multicast or address.is_reserved or site_local or not address.is_global:
        return f"{address} is not a public unicast address"
    if address not in _GLOBAL_ANYCAST and any(address in n for n in _ALSO_NOT_GLOBAL):
        return f"{address} is not a public unicast address"
    return None


def resolve(target: Target, allow_loopback: bool | None = None) -> IPAddress:
    """The address to connect to: the name's first address, provided that every address it
    resolves to may be called (a name with one private address among public ones is refused:
    which one a client would pick is not ours to guess)."""
    # A name that does not resolve and one that resolves inside the operator's networks are
    # refused in the same words: what the operator's names resolve to, and which of them
    # exist, is not the Party's to learn (audit 21a: a Party told them apart one by one)
    named = f"webhooks may not be sent to {target.host}: {NAME_REFUSED}"
    try:
        found = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError):
        raise Unresolved(named) from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found]
    if not addresses:
        raise Unresolved(named)
    for address in addresses:
        why = refusal(address, allow_loopback)
        if why is None and target.scheme != "https" and not _is_loopback(address):
            why = f"{address} is not a loopback address, and only loopback may have http://"
        if why is not None:
            if not _is_address(target.host):
                raise UnsafeUrl(named)
            raise UnsafeUrl(f"webhooks may not be sent to {target.host}: {why}")
    return addresses[0]


def _is_address(host: str) -> bool:
    """Whether the URL's host is an address as written (the Party's own words), not a name."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_loopback(address: IPAddress) -> bool:
    inner = _embedded(address)
    return (inner or address).is_loopback


def check_url(url: str) -> Target:
    """A webhook URL that may be called now, or UnsafeUrl (at creation; delivery checks
    again: SPEC section 6 refuses a URL that resolves inside the operator's networks at
    both). An https URL whose host does not resolve is taken: a name may be registered
    before its receiver, and a store's machine may not see the public DNS; every delivery
    resolves it and checks the addresses then. A plain http one must be shown to be
    loopback. (That a name resolving privately is refused now and one resolving nowhere is
    not tells a Party which of the operator's names exist: the contract's to weigh.)"""
    target = parse_url(url)
    try:
        resolve(target)
    except Unresolved:
        if target.scheme != "https":
            raise
    return target
