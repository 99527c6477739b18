"""The record page's way back to the search it was opened from (web.search_back): the
"Search" breadcrumb always went to `/`, and an analyst on page 2 of a filtered search lost the
filters (review of the screen, 47d). `back` is anyone's to write in a link: the crumb is only
ever the search's own address, rebuilt from its fields."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape
from urllib.parse import parse_qsl, urlsplit

import pytest

from servicetrail.domain.model import SatRecord
from tests import personas as P
from tests.web.screen import personas_with, signed_in

SEARCH = {"device_id": P.ESME_S1, "kind": "request", "srv": "4.1.1"}


@pytest.fixture
@P.starts_with_personas
def world(engine):
    extra = {
        f"r{n}": SatRecord(
            P.t("2025-04-01T00:00:00Z") + timedelta(minutes=n),
            "request",
            f"{P.NP_IS}:{P.ESME_S1}:{2000 + n}",
            "4.1.1",
            P.NP_IS,
            P.ESME_S1,
            "",
            f"<p{n}/>",
        )
        for n in range(70)
    }
    return personas_with(engine, extra, (P.NORTHPOWER,))


def crumb(page: str) -> str:
    found = re.search(
        r'<nav class="crumbs" aria-label="Breadcrumb">\s*<ol>\s*<li><a href="([^"]*)"', page
    )
    assert found, page[:2000]
    return unescape(found.group(1))


def test_a_record_opened_from_page_two_of_a_search_goes_back_to_it(engine, world):
    client = signed_in(engine, P.NORTHPOWER)
    first = client.get("/", params=SEARCH).text
    page_two = unescape(re.search(r'href="([^"]+)" rel="next"', first).group(1))
    listed = client.get(page_two).text
    opened = unescape(re.search(r'<td role="cell" class="c-srv"><a href="([^"]+)"', listed)[1])
    assert opened.startswith("/records/") and "back=" in opened
    record = client.get(opened)
    assert record.status_code == 200
    back = crumb(record.text)
    assert dict(parse_qsl(urlsplit(back).query)) == dict(parse_qsl(urlsplit(page_two).query))
    assert client.get(back).text.count('<tr class="row-') == listed.count('<tr class="row-')
    # on to another record of its exchange or a trigger, and the window's form: still it
    assert all(
        "back=" in link for link in re.findall(r'href="(/records/\d+[^"]*)">Open', record.text)
    )
    # the empty search's first page: the plain record address, as before
    plain = client.get("/").text
    assert re.search(r'<td role="cell" class="c-srv"><a href="/records/\d+">', plain)


@pytest.mark.parametrize(
    "back",
    [
        "//evil.example/?device_id=1",
        "https://evil.example/",
        "javascript:alert(1)",
        "/\\evil.example",
        "\\\\evil.example",
        "next=//evil.example&srv=4.1.1",
        'srv="><script>alert(1)</script>',
        "srv=%22%3E%3Cscript%3Ealert(1)%3C/script%3E",
        "srv=a%0d%0aSet-Cookie:%20x=1",
        "srv=1&srv=2",
        "cursor=not-a-cursor&page=7&srv=4.1.1",
        "srv=" + "x" * 3000,
        "",
    ],
)
def test_the_way_back_is_only_ever_the_searchs_own_address(engine, world, back):
    client = signed_in(engine, P.NORTHPOWER)
    record = client.get(f"/records/{world.ids['r1']}", params={"back": back})
    assert record.status_code == 200
    assert "<script>alert" not in record.text and "evil.example" not in record.text
    href = crumb(record.text)
    parts = urlsplit(href)
    assert parts.path == "/" and not parts.scheme and not parts.netloc and not href.startswith("//")
    names = [name for name, _ in parse_qsl(parts.query, keep_blank_values=True)]
    assert len(names) == len(set(names))
    assert set(names) <= {"device_id", "request_id", "srv", "kind", "from", "to", "scope"}
    assert "\r" not in href and "\n" not in href and len(href) < 2100
    assert client.get(href).status_code in (200, 422)
