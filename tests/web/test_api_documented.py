"""What the API answers is what /openapi.json says it answers: every JSON endpoint documents
its 200 body, and real answers of each (own and titles-only records, a Party's and an
auditor's views, errors) validate against the published document, checked by schemathesis
with every documented object closed (an undocumented key fails as a missing one does)."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
import schemathesis

from servicetrail.store.merkle_log import seal_store
from tests.conftest import ON_SQLITE_ALONE
from tests import personas as P


def _closed(node: Any) -> Any:
    """The document with additionalProperties false on every object that lists its keys."""
    if isinstance(node, dict):
        shut = {key: _closed(value) for key, value in node.items()}
        if "properties" in shut and "additionalProperties" not in shut:
            shut["additionalProperties"] = False
        return shut
    if isinstance(node, list):
        return [_closed(value) for value in node]
    return node


@pytest.fixture
def published(client):
    document = client.get("/openapi.json").json()
    return document, schemathesis.openapi.from_dict(_closed(copy.deepcopy(document)))


@ON_SQLITE_ALONE
def test_every_json_endpoint_documents_its_answer(published):
    document, _ = published
    undocumented = []
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            ok = operation["responses"].get("200") or operation["responses"].get("201")
            if not path.startswith("/api/") or ok is None:
                continue
            for media, body in ok.get("content", {"application/json": {}}).items():
                if media == "application/json" and not body.get("schema"):
                    undocumented.append(f"{method.upper()} {path}")
    assert undocumented == []


def test_every_answer_matches_the_published_document(
    engine, client, published, world, auditor, bearer
):
    _, schema = published
    seal_store(engine)
    party = bearer(P.SOUTHENERGY)
    own, titles_only = world.ids["se_req"], world.ids["sx_req"]
    watch = client.post(
        "/api/v1/watches",
        headers=party,
        json={"name": "documented", "webhook": {"url": "https://hooks.example/x"}},
    )
    client.get("/api/v1/records", headers=party)  # an access-log entry, sealed in its log
    seal_store(engine)
    logs = client.get("/api/v1/logs", headers=auditor).json()["logs"]
    access_log = next(log["origin"] for log in logs if "/access/" in log["origin"])
    asked = [
        ("POST", "/api/v1/watches", party, watch),
        ("GET", "/api/v1/records", party, "?limit=3"),
        ("GET", "/api/v1/records/{record_id}", party, own),
        ("GET", "/api/v1/records/{record_id}", party, titles_only),
        ("GET", "/api/v1/records/{record_id}/why", party, titles_only),
        ("GET", "/api/v1/records/{record_id}/triggers", party, world.ids["se_resp"]),
        ("GET", "/api/v1/records/{record_id}/proof", party, own),
        ("GET", "/api/v1/records/{record_id}/proof", party, titles_only),
        ("GET", "/api/v1/records/{record_id}/proof", party, 999_999),
        ("GET", "/api/v1/records/{record_id}/proof", auditor, own),
        ("GET", "/api/v1/logs", party, ""),
        ("GET", "/api/v1/logs", auditor, ""),
        ("GET", "/api/v1/logs/consistency", auditor, f"?origin={access_log}&from=1&to=1"),
        ("GET", "/api/v1/logs/consistency", party, f"?origin={access_log}&from=1&to=1"),
        ("GET", "/api/v1/logs/consistency", party, "?origin=servicetrail/sat/2025-03&from=0"),
        ("GET", "/api/v1/access-log", party, ""),
        ("GET", "/api/v1/access-log", auditor, "?limit=2"),
        ("GET", "/api/v1/access-log", None, ""),
        ("GET", "/api/v1/watches", party, ""),
        ("GET", "/api/v1/watches/{watch_id}/events", party, watch),
        ("GET", "/api/v1/watches/{watch_id}", party, watch),
        ("GET", "/api/v1/watches/{watch_id}", auditor, watch),
        ("GET", "/api/v1/watches/{watch_id}/webhook", party, watch),
        ("GET", "/api/v1/watches/{watch_id}", party, "/987654"),
    ]
    seen = set()
    for method, template, headers, detail in asked:
        if isinstance(detail, int):
            url = template.replace("{record_id}", str(detail))
        elif not isinstance(detail, str):
            url = template.replace("{watch_id}", str(detail.json()["id"]))
        elif "{watch_id}" in template:  # a watch that is not there
            url = template.replace("/{watch_id}", detail)
        else:
            url = template + detail
        answer = detail if method == "POST" else client.get(url, headers=headers or {})
        assert answer.status_code < 500, (url, answer.text)
        seen.add(answer.status_code)
        schema[template][method].validate_response(answer)
    assert {200, 201, 401, 403, 404, 422} <= seen


@ON_SQLITE_ALONE
def test_whole_numbers_the_routes_parse_are_documented_as_integers(published):
    """`window` and `after` were `string or null` and `integer` at once: no value satisfies
    both, so a generated client could send none."""
    document, _ = published
    parameters = {
        (path, p["name"]): p["schema"]
        for path, methods in document["paths"].items()
        for operation in methods.values()
        for p in operation.get("parameters", [])
    }
    contradictory = [key for key, s in parameters.items() if "anyOf" in s and "type" in s]
    assert contradictory == []
    window = parameters[("/api/v1/records/{record_id}/triggers", "window")]["anyOf"][0]
    assert (window["type"], window["minimum"]) == ("integer", 1)
    after = parameters[("/api/v1/watches/{watch_id}/stream", "after")]["anyOf"][0]
    assert after["type"] == "integer"
    # the stream's resume point as a header, as it is read (it was any string, or null)
    resume = parameters[("/api/v1/watches/{watch_id}/stream", "Last-Event-ID")]["anyOf"]
    assert resume == [{"type": "integer", "minimum": 0, "maximum": 2**63 - 1}, {"enum": [""]}]
    # a watch's id, as POST answers it (it was any string: a generated client took text)
    ids = [s for (path, name), s in parameters.items() if name == "watch_id"]
    assert len(ids) == 4  # its four addresses (GET and DELETE share one)
    assert all((s["type"], s["minimum"]) == ("integer", 1) for s in ids)
    # a record's id alike (it was any string), at its four API addresses
    records = [s for (path, name), s in parameters.items() if name == "record_id"]
    assert len(records) == 4
    assert all(
        (s["type"], s["minimum"], s["maximum"]) == ("integer", 1, 2**63 - 1) for s in records
    )


# an example a description gives ("such as ...", "or ..."): a date, or a date and time
EXAMPLE = re.compile(r"(?:such as|or) ([0-9]{4}-[0-9]{2}-[0-9]{2}(?:T[0-9:]+(?:Z|[+-][0-9:]+))?)")


@ON_SQLITE_ALONE
def test_a_time_parameter_says_what_to_type_with_examples_the_api_takes(client, published, bearer):
    """`from` and `to` were "ISO-8601 with offset or a date alone": a standard's number, not
    what to type, and the same words for both (review of the screen, 64d). Each says whether
    it is inclusive, and gives a date and a date and time of its own, which the API takes."""
    document, _ = published
    described = {
        (path, p["name"]): p["description"]
        for path, methods in document["paths"].items()
        for operation in methods.values()
        for p in operation.get("parameters", [])
        if p["name"] in ("from", "to") and "date-time" in json.dumps(p["schema"])
    }
    assert {path for path, _ in described} == {
        "/api/v1/records",
        "/api/v1/reports/own.csv",
        "/api/v1/access-log",
    }
    examples = {}
    for (path, name), description in described.items():
        assert "ISO" not in description, (path, name)
        assert description.startswith("inclusive: " if name == "from" else "exclusive: ")
        found = EXAMPLE.findall(description)
        assert any("T" in e for e in found) and any("T" not in e for e in found), description
        examples[name] = found
    assert not set(examples["from"]) & set(examples["to"])  # each its own
    party = bearer(P.SOUTHENERGY)
    for name, typed in examples.items():
        for example in typed:
            answer = client.get("/api/v1/records", params={name: example}, headers=party)
            assert answer.status_code == 200, (name, example, answer.text)
