"""A parameter of white space alone is a 422 that names it, whichever filter it is: `srv=%20`
was taken as no filter while `request_id=%20%20` was refused (review 47b). An empty one is
not given (SPEC section 5's `?device_id=&request_id=&srv=...`)."""

from __future__ import annotations

import jsonschema_rs
import pytest

from tests.conftest import ON_SQLITE_ALONE
from tests import personas as P

SEARCH = ("device_id", "request_id", "srv", "kind", "from", "to", "scope", "limit")


@pytest.mark.parametrize("name", SEARCH)
@pytest.mark.parametrize("blank", [" ", "  ", "\t"])
@ON_SQLITE_ALONE
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
@ON_SQLITE_ALONE
def test_the_other_reads_say_a_blank_parameter_alike(client, bearer, path, name):
    params = {"from": "2025-01-01T00:00:00Z", "to": "2025-02-01T00:00:00Z", name: "  "}
    answer = client.get(path, headers=bearer(P.NORTHPOWER), params=params)
    assert answer.status_code == 422, answer.text[:200]
    assert answer.json()["message"] == f"{name}: is blank (white space alone)"


BLANKS = (" ", "\t", "\u3000", "\u00a0\u2028")
# the reads with required parameters: valid values of them
REQUIRED = {
    "/api/v1/reports/own.csv": {"from": "2025-01-01T00:00:00Z", "to": "2025-02-01T00:00:00Z"},
    "/api/v1/logs/consistency": {"origin": "servicetrail/sat/2025-03", "from": "1", "to": "1"},
}
TEXTS = ("srv", "cursor", "party_id", "origin")  # free text, where the patterns are


@ON_SQLITE_ALONE
def test_every_parameter_of_white_space_alone_is_blank_and_its_schema_says_so(
    client, bearer, auditor, world
):
    """Every query parameter of the document: white space alone is a 422 saying it is blank
    (`cursor`, `window` and `after` each said it in their parser's words, review 47j), and
    its schema (read as ECMA-262, as clients read it) refuses it too (`srv`'s took it, 47b);
    an empty value is still not given."""
    document = client.get("/openapi.json").json()
    party = bearer(P.SOUTHENERGY)
    watch = client.post("/api/v1/watches", headers=party, json={"name": "w"}).json()["id"]
    ids = {"record_id": world.ids["se_req"], "watch_id": watch}
    checked = []
    for path, methods in document["paths"].items():
        query = [p for p in methods.get("get", {}).get("parameters", []) if p["in"] == "query"]
        for parameter in query:
            name, schema = parameter["name"], parameter["schema"]
            documented = jsonschema_rs.validator_for(
                {**schema, "components": document["components"]}, validate_formats=True
            )
            assert not any(documented.is_valid(blank) for blank in BLANKS), (path, name)
            if "pattern" in schema and not parameter["required"]:  # "": not given
                assert documented.is_valid(""), (path, name)
            if name in TEXTS:
                assert documented.is_valid(" 4.1 a "), (path, name)
            headers = auditor if "party_id" == name or "/logs" in path else party
            given = REQUIRED.get(path, {})
            for blank in BLANKS:
                params = {**given, name: blank}
                answer = client.get(path.format(**ids), headers=headers, params=params)
                assert answer.status_code == 422, (path, name, answer.text[:200])
                assert answer.json()["message"] == f"{name}: is blank (white space alone)"
            checked.append(name)
    assert {*TEXTS, "window", "after"} <= set(checked)
