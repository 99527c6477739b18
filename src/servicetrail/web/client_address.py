"""A client as the server's limits see it: the key its connections and requests are counted
by (an IPv6 client's /64), and whether its address is a trusted proxy's."""

from __future__ import annotations

import ipaddress


def client_key(host: str) -> str:
    """A client's address as its limits count it: an IPv6 client's /64, which one host is
    usually given whole (an IPv4 address mapped into IPv6 is that address)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def is_trusted_proxy(host: str, trusted: list[str] | str) -> bool:
    """Whether `host` is one of `serve --trusted-proxies` (addresses or networks, or `*`)."""
    entries = trusted.split(",") if isinstance(trusted, str) else trusted
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    for entry in (e.strip() for e in entries):
        if entry == "*":
            return True
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False
