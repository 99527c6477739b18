"""Outbound safety (issue 13 item 4): which URLs and addresses a webhook may go to. That a
delivery connects to the address it checked, follows no redirect and reads a bounded answer
is test_posting's."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from servicetrail import settings
from servicetrail.webhooks import outbound
from servicetrail.webhooks.outbound import UnsafeUrl, check_url, parse_url, refusal


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.9.9.9",
        "::1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "0.0.0.0",
        "::",
        "100.64.0.1",
        "224.0.0.1",
        "ff02::1",
        "255.255.255.255",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "2002:7f00:0001::1",
        "64:ff9b::a00:1",
        "192.0.2.1",
        "198.18.0.1",
        # that Python 3.11's is_global lets through
        "fec0::1",
        "::127.0.0.1",
        "::ffff:0:127.0.0.1",
        "64:ff9b:1::7f00:1",
        # and that its tables call global though IANA does not (audit, session 18)
        "192.0.0.8",
        "192.88.99.1",
        "3fff::1",
    ],
)
def test_internal_addresses_are_refused(address: str) -> None:
    assert refusal(ipaddress.ip_address(address), allow_loopback=False) is not None


@pytest.mark.parametrize(
    "address",
    ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "8.8.8.8", "192.0.0.9", "192.0.0.10"],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal(ipaddress.ip_address(address), allow_loopback=False) is None


def test_allowing_loopback_allows_loopback_only() -> None:
    assert refusal(ipaddress.ip_address("127.0.0.1"), allow_loopback=True) is None
    assert refusal(ipaddress.ip_address("::ffff:127.0.0.1"), allow_loopback=True) is None
    assert refusal(ipaddress.ip_address("10.0.0.1"), allow_loopback=True) is not None
    assert refusal(ipaddress.ip_address("169.254.169.254"), allow_loopback=True) is not None


@pytest.mark.parametrize(
    "url",
    [
        "http://example.org/",
        "ftp://example.org/",
        "https://user@example.org/",
        "https:///path",
        "https://",
        "https://exa mple.org/",
        "https://exämple.org/",
        "https://example.org/#frag",
        "javascript:alert(1)",
        "https://example.org:99999/",
        "https://1.1.1.1:0/",  # port 0 went to 443
        "https://example.org/\r\nX-Injected: 1",
        "https://[fe80::1%25eth0]/",  # a zone the resolver did not know: never checked
        "https://[::1%25lo]/",
    ],
)
def test_malformed_or_plain_http_urls_are_refused(url: str, monkeypatch) -> None:
    monkeypatch.delenv("SERVICETRAIL_WEBHOOK_ALLOW_LOOPBACK", raising=False)
    settings.reload()
    with pytest.raises(UnsafeUrl):
        parse_url(url)


@pytest.mark.parametrize(
    "url, said",
    [
        ("https://[fe80::1%25eth0]/", "the URL's host must not name an IPv6 zone (%)"),
        ("https://exa%6dple.org/", "the URL's host must be written as it is, not %-escaped"),
        ("https://%31%32%37.0.0.1/", "the URL's host must be written as it is, not %-escaped"),
    ],
)
def test_a_percent_in_the_host_is_refused_saying_which_it_is(url: str, said: str) -> None:
    """An escaped name was refused as an IPv6 zone, which it did not name."""
    with pytest.raises(UnsafeUrl) as refused:
        parse_url(url)
    assert str(refused.value) == said


def test_http_is_allowed_only_with_loopback_allowed() -> None:
    assert parse_url("http://127.0.0.1:8080/h?x=1", allow_loopback=True).target == "/h?x=1"
    with pytest.raises(UnsafeUrl):
        parse_url("http://127.0.0.1:8080/h", allow_loopback=False)


def test_a_name_is_judged_by_every_address_it_resolves_to(monkeypatch) -> None:
    monkeypatch.delenv("SERVICETRAIL_WEBHOOK_ALLOW_LOOPBACK", raising=False)
    settings.reload()

    def fake(host, port, *args, **kwargs):
        answers = {
            "public.test": ["93.184.216.34"],
            "mixed.test": ["93.184.216.34", "10.1.1.1"],
            "decimal.test": ["127.0.0.1"],
        }
        if host not in answers:
            raise socket.gaierror(-2, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in answers[host]]

    monkeypatch.setattr(outbound.socket, "getaddrinfo", fake)
    assert check_url("https://public.test/hook").host == "public.test"
    for url, inside in (("https://mixed.test/hook", "10.1.1.1"), ("https://decimal.test/", "127")):
        with pytest.raises(UnsafeUrl) as refused:  # SPEC section 6: at creation too
            check_url(url)
        assert inside not in str(refused.value)  # nor where the operator's name points
    # a name that does not resolve yet is taken at creation; each delivery resolves it again
    assert check_url("https://nowhere.test/hook").host == "nowhere.test"
    said = set()
    for url in ("https://mixed.test/h", "https://decimal.test/h", "https://nowhere.test/h"):
        with pytest.raises(UnsafeUrl) as refused:
            outbound.resolve(parse_url(url))
        said.add(str(refused.value).replace(url.split("/")[2], "HOST"))
    # a delivery's refusal is in one set of words, whether the name resolves inside the
    # operator's networks or not at all (audit 21a)
    assert said == {f"webhooks may not be sent to HOST: {outbound.NAME_REFUSED}"}


def test_plain_http_goes_to_loopback_only(monkeypatch) -> None:
    monkeypatch.setenv("SERVICETRAIL_WEBHOOK_ALLOW_LOOPBACK", "1")
    settings.reload()

    def fake(host, port, *args, **kwargs):
        answers = {"public.test": ["93.184.216.34"], "local.test": ["127.0.0.1", "::1"]}
        if host not in answers:
            raise socket.gaierror(-2, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in answers[host]]

    monkeypatch.setattr(outbound.socket, "getaddrinfo", fake)
    try:
        assert check_url("http://local.test:8080/hook").port == 8080
        assert check_url("https://public.test/hook").host == "public.test"
        for url in ("http://93.184.216.34/", "http://public.test/hook", "http://nowhere.test/"):
            with pytest.raises(UnsafeUrl):
                check_url(url)
    finally:
        monkeypatch.delenv("SERVICETRAIL_WEBHOOK_ALLOW_LOOPBACK")
        settings.reload()


def test_numeric_hosts_in_odd_forms_are_resolved_then_refused(monkeypatch) -> None:
    monkeypatch.delenv("SERVICETRAIL_WEBHOOK_ALLOW_LOOPBACK", raising=False)
    settings.reload()
    for url in (
        "https://2130706433/",
        "https://0x7f.0.0.1/",
        "https://0177.0.0.1/",
        "https://127.1/",
        "https://[::ffff:7f00:1]/",
        "https://localhost./",
    ):
        with pytest.raises(UnsafeUrl):
            check_url(url)


def test_one_address_spelt_many_ways_is_one_receiver() -> None:
    """A receiver's limits are counted by its host: each spelling the resolver reads as the
    same address must be the same host, or a Party multiplies its receiver's share."""
    for spellings, address in (
        (("127.0.0.1", "127.1", "2130706433", "0x7f000001", "0x7f.1", "0177.0.0.1"), "127.0.0.1"),
        (("[2001:db8::1]", "[2001:DB8:0:0:0:0:0:1]", "[2001:0db8::0001]"), "2001:db8::1"),
    ):
        for spelling in spellings:
            assert parse_url(f"https://{spelling}:8443/x").host == address, spelling
    for name in ("example.com", "0x7f.example", "1.2.3.4.5", "deadbeef.test"):
        assert parse_url(f"https://{name}/").host == name


# --- found missing by mutation testing (audit 29b) ----------------------------------------


@pytest.mark.parametrize("url", ["https://hook.localhost/", "https://a.b.LOCALHOST./x"])
def test_a_subdomain_of_localhost_is_refused_without_resolving(url, monkeypatch) -> None:
    """ob2: RFC 6761 makes every *.localhost loopback; a resolver that does not know the name
    (glibc without systemd-resolved) answers nothing, and an https URL whose name does not
    resolve is taken at creation. Only parse_url's suffix check stops it."""
    monkeypatch.delenv("SERVICETRAIL_WEBHOOK_ALLOW_LOOPBACK", raising=False)
    settings.reload()

    def nothing(host, port, *args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(outbound.socket, "getaddrinfo", nothing)
    with pytest.raises(UnsafeUrl):
        check_url(url)


def test_nat64_of_a_public_address_is_judged_by_that_address() -> None:
    """ob6: 64:ff9b::/96 goes where its last 32 bits say; one carrying a public IPv4 address
    is a public receiver (an IPv6-only operator reaches IPv4 receivers so)."""
    assert refusal(ipaddress.ip_address("64:ff9b::808:808"), allow_loopback=False) is None
    assert refusal(ipaddress.ip_address("64:ff9b::a00:1"), allow_loopback=False) is not None


def test_plain_http_to_a_name_resolving_to_mapped_loopback_is_allowed(monkeypatch) -> None:
    """ob8: with loopback allowed, http:// goes to loopback only; ::ffff:127.0.0.1 is loopback
    (refusal already reads it so), and the http check must agree with it."""
    monkeypatch.setenv("SERVICETRAIL_WEBHOOK_ALLOW_LOOPBACK", "1")
    settings.reload()

    def fake(host, port, *args, **kwargs):
        return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::ffff:127.0.0.1", port, 0, 0))]

    monkeypatch.setattr(outbound.socket, "getaddrinfo", fake)
    try:
        assert check_url("http://mapped.test:8080/hook").port == 8080
    finally:
        monkeypatch.delenv("SERVICETRAIL_WEBHOOK_ALLOW_LOOPBACK")
        settings.reload()


@pytest.mark.parametrize(
    "url, header",
    [
        ("https://example.org/", "example.org"),
        ("https://example.org:443/", "example.org"),
        ("https://example.org:8443/", "example.org:8443"),
        ("http://127.0.0.1:80/", "127.0.0.1"),
        ("https://[2606:2800:220:1::1]/", "[2606:2800:220:1::1]"),
        ("https://[2606:2800:220:1::1]:444/", "[2606:2800:220:1::1]:444"),
    ],
)
def test_the_host_header_names_the_port_only_when_not_the_schemes(url, header) -> None:
    """ob10: Host is `host[:port]` (RFC 9110 7.2): the default port left out, as receivers
    and their virtual hosts expect."""
    assert parse_url(url, allow_loopback=True).host_header == header
