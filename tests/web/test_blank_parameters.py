"""A parameter of white space alone is a 422 that names it, whichever filter it is: `srv=%20`
was taken as no filter while `request_id=%20%20` was refused (review 47b). An empty one is
not given (SPEC section 5's `?device_id=&request_id=&srv=...`)."""

from __future__ import annotations

import pytest

from tests import personas as P

SEARCH = ("device_id", "request_id", "srv", "kind", "from", "to", "scope", "limit")


@pytest.mark.parametrize("name", SEARCH)
@pytest.mark.parametrize("blank", [" ", "  ", "\t"])
def test_a_blank_search_parameter_is_a_422_naming_it(client, bearer, name, blank):
    answer = client.get("/api/v1/records", headers=bearer(P.NORTHPOWER), params={name: blank})
    assert answer.status_code == 422, answer.text[:200]
    assert answer.json()["parameter"] == name
    assert answer.json()["message"] == f"{name}: is blank (white space alone)"


@pytest.mark.parametrize("name", SEARCH)
def test_an_empty_search_parameter_is_not_given(client, bearer, name):
    headers = bearer(P.NORTHPOWER)
    answer = client.get("/api/v1/records", headers=headers, params={name: ""})
    assert answer.status_code == 200, answer.text[:200]
    assert answer.json() == client.get("/api/v1/records", headers=headers).json()


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/api/v1/access-log", "from"),
        ("/api/v1/access-log", "party_id"),
        ("/api/v1/access-log", "limit"),
        ("/api/v1/reports/own.csv", "from"),
    ],
)
def test_the_other_reads_say_a_blank_parameter_alike(client, bearer, path, name):
    params = {"from": "2025-01-01T00:00:00Z", "to": "2025-02-01T00:00:00Z", name: "  "}
    answer = client.get(path, headers=bearer(P.NORTHPOWER), params=params)
    assert answer.status_code == 422, answer.text[:200]
    assert answer.json()["message"] == f"{name}: is blank (white space alone)"
