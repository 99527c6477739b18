"""A query parameter's documented schema says what the API does with its values: what the
API takes, a client generated from /openapi.json may send (`?limit=`, `?kind=`, `?from=` are
"not given", and `from=2025-03-01` a day: refused by the schema, audit 48e), and what the
schema lets a client send, the API takes. Checked with a JSON-Schema validator of its own
(jsonschema_rs, formats checked) on each value, as a query string carries it, and the API's
answer to a request with it: some 100 requests, which are what it proves (a second or two),
on one engine, since neither the document nor the parsing depends on it."""

from __future__ import annotations

import re
from typing import Any

import jsonschema_rs
from schemathesis.specs.openapi.definitions import OPENAPI_31

from servicetrail.domain.ids import MAX_ID
from servicetrail.store.merkle_log import seal_store
from tests import personas as P
from tests.conftest import ON_SQLITE_ALONE

TIMES_TAKEN = (
    "2025-03-01",
    "2024-02-29",
    "2025-03-01T10:00:00Z",
    "2025-03-01t10:00:00.5z",
    "2025-03-01T10:00:00.123456789+01:00",
    "2025-03-01T10:00:00-00:00",
    "0001-01-01",
    "9999-12-30T23:59:59Z",
)
TIMES_REFUSED = (
    "0000-01-01",  # year 0: RFC 3339's formats allow it
    "0000-06-01T00:00:00Z",
    "2016-12-31T23:59:60Z",  # a leap second, likewise
    "2025-03-01T10:00:00." + "1" * 30 + "Z",  # past the 40 characters read
    "2025-03-01T10:00:00",  # no offset: GMT or BST?
    "2025-02-29",
    "2025-03-01T24:00:00Z",
    "soon",
)
# The API also takes ISO-8601's other forms (`20250301`, `2025-W10`, a space for the `T`),
# which the document leaves to its description: a client writes RFC 3339's.
SAMPLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "time": (("", *TIMES_TAKEN), TIMES_REFUSED),
    "required time": (TIMES_TAKEN, ("", *TIMES_REFUSED)),
    "kind": (("", "request", "dcc_alert"), ("Request", "alert")),
    "scope": (("", "own", "others", "all"), ("mine", "OWN")),
    "limit": (("", "1", "1000", "007"), ("0", "1001", "-1", "1.0", "+5", "ten")),
    "window": (("", "1", "10080"), ("0", "10081", "1.5")),
    "after": (("", "0", str(MAX_ID)), ("-1", str(MAX_ID + 1), "x")),
    "tree size": (("1",), ("", "0", str(MAX_ID + 1), "one")),
    "origin": (("{origin}",), ("",)),
}
# where a route reads a parameter through the same schema and parser as one above: a few of
# its samples (each is a request, some 15 ms)
SAMPLES |= {
    f"{name} again": (taken[:3], refused[:3])
    for name, (taken, refused) in SAMPLES.items()
    if name in ("time", "required time", "limit")
}
# (path, parameter): its sample values, the other parameters the request needs and who asks
ASKED: dict[tuple[str, str], tuple[str, dict[str, str], str]] = {
    ("/api/v1/records", "from"): ("time", {}, "party"),
    ("/api/v1/records", "to"): ("time again", {}, "party"),
    ("/api/v1/records", "kind"): ("kind", {}, "party"),
    ("/api/v1/records", "scope"): ("scope", {}, "party"),
    ("/api/v1/records", "limit"): ("limit", {}, "party"),
    ("/api/v1/access-log", "from"): ("time again", {}, "auditor"),
    ("/api/v1/access-log", "to"): ("time again", {}, "auditor"),
    ("/api/v1/access-log", "limit"): ("limit again", {}, "auditor"),
    ("/api/v1/reports/own.csv", "from"): ("required time again", {"to": "9999-12-31"}, "party"),
    ("/api/v1/reports/own.csv", "to"): ("required time", {"from": "0001-01-01"}, "party"),
    ("/api/v1/records/{record_id}/triggers", "window"): ("window", {}, "party"),
    ("/api/v1/watches/{watch_id}/events", "after"): ("after", {}, "party"),
    ("/api/v1/watches/{watch_id}/events", "limit"): ("limit again", {}, "party"),
    ("/api/v1/logs/consistency", "from"): (
        "tree size",
        {"to": "1", "origin": "{origin}"},
        "auditor",
    ),
    ("/api/v1/logs/consistency", "to"): (
        "tree size",
        {"from": "1", "origin": "{origin}"},
        "auditor",
    ),
    ("/api/v1/logs/consistency", "origin"): ("origin", {"from": "1", "to": "1"}, "auditor"),
}


def _documented(schema: dict[str, Any], document: dict[str, Any], value: str) -> bool:
    """Whether the schema takes a query string's value: as the text it is, or, written as a
    whole number, as that number (OpenAPI's form style gives a query value no type of its own)."""
    validator = jsonschema_rs.validator_for(
        {**schema, "components": document["components"]}, validate_formats=True
    )
    whole = re.fullmatch("-?[0-9]+", value) is not None
    return validator.is_valid(value) or (whole and validator.is_valid(int(value)))


@ON_SQLITE_ALONE
def test_what_the_api_takes_its_document_takes_and_no_more(engine, client, bearer, auditor, world):
    seal_store(engine)  # a checkpoint, for a consistency proof from 1 to 1
    origin = client.get("/api/v1/logs", headers=auditor).json()["logs"][0]["origin"]
    party = bearer(P.SOUTHENERGY)
    watch = client.post("/api/v1/watches", headers=party, json={"name": "w"}).json()["id"]
    ids = {"record_id": world.ids["se_req"], "watch_id": watch}
    document = client.get("/openapi.json").json()
    assert jsonschema_rs.validator_for(OPENAPI_31).is_valid(document)
    schemas = {
        (path, p["name"]): p["schema"]
        for path, methods in document["paths"].items()
        for p in methods.get("get", {}).get("parameters", [])
    }
    wrong = []
    for (path, name), (sample, others, who) in ASKED.items():
        schema, taken, refused = schemas[path, name], *SAMPLES[sample]
        headers = party if who == "party" else auditor
        others = {key: text.format(origin=origin) for key, text in others.items()}
        for value, expected in [*((v, True) for v in taken), *((v, False) for v in refused)]:
            value = value.format(origin=origin)
            answer = client.get(path.format(**ids), headers=headers, params={**others, name: value})
            said = (answer.status_code == 200, _documented(schema, document, value))
            if said != (expected, expected):
                wrong.append((path, name, value, answer.status_code, said[1]))
            assert answer.status_code in (200, 422), (path, name, value, answer.text[:200])
    assert wrong == []
