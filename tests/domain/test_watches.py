"""Reading a watch from outside (SPEC section 6): every problem at once, as the screen's form
says them, agrees with the API's reading, which stops at the first."""

from __future__ import annotations

import copy
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servicetrail.domain import watches
from servicetrail.domain.search import InvalidField, build_search
from servicetrail.domain.watches import (
    Candidate,
    InvalidWatch,
    PartyWatches,
    Watch,
    WatchSpec,
    Listed,
    never_matches,
    watch_problems,
    watch_spec,
)

GOOD = {
    "name": st.sampled_from(["on my meters", "x" * 200]),
    "devices": st.sampled_from(["mine", ["00-DB-12-34-56-78-A0-01"]]),
    "srvs": st.sampled_from(["all", "critical", ["11.2", "4.1.1"]]),
    "kinds": st.sampled_from([["request"], ["response", "device_alert"]]),
    "senders": st.sampled_from(["others", "all"]),
    "webhook": st.sampled_from([None, {"url": "https://example.com/hook"}]),
}
BAD = {
    "name": st.sampled_from(["", "x" * 201, 7, None]),
    "devices": st.sampled_from(["yours", ["not-a-device"], [], None]),
    "srvs": st.sampled_from(["most", ["x"], [], 3]),
    "kinds": st.sampled_from([["gossip"], [], "request"]),
    "senders": st.sampled_from(["anyone", None]),
    "webhook": st.sampled_from([{"url": 5}, "https://x", {"url": ""}]),
}


@st.composite
def bodies(draw) -> tuple[dict, set[str]]:
    """A body with some fields left out, some good and some bad, and the fields made bad."""
    body, bad = {}, set()
    for field in GOOD:
        choice = draw(st.sampled_from(["absent", "good", "bad"]))
        if choice == "good":
            body[field] = draw(GOOD[field])
        elif choice == "bad":
            body[field] = draw(BAD[field])
            bad.add(field)
        elif field == "name":
            bad.add(field)  # required
    return body, bad


@settings(max_examples=300, deadline=None)
@given(bodies())
def test_every_problem_is_found_and_the_apis_first_is_one_of_them(drawn) -> None:
    body, bad = drawn
    problems = watch_problems(body)
    assert {field.split(".")[0] for field in problems} == bad
    try:
        watch_spec(body)
    except InvalidWatch as e:
        assert problems.get(e.field) == e.message
    else:
        assert problems == {}


def test_alerts_alone_from_other_users_never_match() -> None:
    alerts = Listed(["device_alert", "dcc_alert"])
    assert never_matches(WatchSpec("w", kinds=alerts))
    assert not never_matches(WatchSpec("w", kinds=alerts, senders="all"))
    assert not never_matches(WatchSpec("w", kinds=Listed(["device_alert", "response"])))


def test_watches_with_the_same_filters_are_tested_once_for_all(monkeypatch) -> None:
    """A Party's repeated watch (its name or webhook aside, its lists in another order) costs
    the matcher one test a record, and each copy still gets the record; another filter is
    tested on its own."""
    kinds = ["request", "response"]
    same = [
        Watch(n, "P", WatchSpec(f"w{n}", srvs=Listed(["11.2", "4"]), kinds=Listed(kinds)))
        for n in range(1, 100)
    ]
    turned = Watch(100, "P", WatchSpec("w", srvs=Listed(["4", "11.2"]), kinds=Listed(kinds[::-1])))
    hooked = Watch(101, "P", WatchSpec("w", srvs=Listed(["11.2"]), webhook_url="https://x/h"))
    tests = []
    monkeypatch.setattr(watches, "matches", lambda spec, record: tests.append(spec) or True)
    found = PartyWatches([*same, turned, hooked]).matching(
        Candidate(1, "request", "11.2", "00-DB-12-34-56-78-90-01", own=False, held=True)
    )
    assert sorted(w.watch_id for w in found) == list(range(1, 102))
    assert len(tests) == 2  # the 100 alike, and the one on 11.2 alone


@pytest.mark.parametrize(
    "name",
    [
        "پایش می\u200cشود",  # Persian: a word written with a ZWNJ
        "\U0001f469\u200d\U0001f469\u200d\U0001f467 family",  # an emoji family, ZWJs
        "\U0001f3f3\ufe0f\u200d\U0001f308 flag",
        "क्\u200dष",  # Devanagari half-form
    ],
)
def test_a_watch_name_may_hold_a_joiner_inside_a_word(name: str) -> None:
    """The Party's own label, in its own script: a 422 blaming "combining marks" (46c)."""
    assert watch_spec({"name": name}).name == name


@pytest.mark.parametrize(
    "name",
    [
        "a\u2028b",  # a line separator breaks the line as "\n" does
        "a\u2029b",
        "\u200dab",  # a joiner joining nothing: an invisible difference between two names
        "ab\u200d",
        "a \u200db",
        "a\u200d\u200db",
        "a\u200bb",  # zero-width space
        "a\u202eb",  # a direction override
        "a\ufeffb",
        "a\u3164b",  # a Hangul filler: a letter that draws nothing (audit 55f)
        "a\uffa0b",
        "a\u2800b",  # the blank braille pattern
        "a\u034fb",  # the combining grapheme joiner, alone
        "a\u17b4b",  # a Khmer inherent vowel
    ],
)
def test_a_watch_name_refuses_what_breaks_a_line_or_hides(name: str) -> None:
    with pytest.raises(InvalidWatch) as refused:
        watch_spec({"name": name})
    assert refused.value.field == "name" and "combining" not in refused.value.message


def test_a_joiner_does_not_restart_the_count_of_marks_on_a_character() -> None:
    """Joiners draw nothing: between piles of four accents they stacked 120 on one "Z", which
    drew over the rows above it, as the grapheme joiner did before session 18 (review 46f)."""
    for joiner in ("\u200d", "\u200c"):
        piled = "Z" + ("\u0301" * 4 + joiner) * 30 + "\u0301" * 4 + "x"
        with pytest.raises(InvalidWatch) as refused:
            watch_spec({"name": piled})
        assert refused.value.field == "name" and "combining marks" in refused.value.message


def test_a_watchs_values_iterate_in_the_order_given_and_compare_as_a_set() -> None:
    values = Listed(["11.2", "4.1.1", "11.2", "1.1.1"])
    assert list(values) == ["11.2", "4.1.1", "1.1.1"] and len(values) == 3
    assert values == {"1.1.1", "4.1.1", "11.2"} and hash(values) == hash(frozenset(values))
    for again in (pickle.loads(pickle.dumps(values)), copy.deepcopy(values)):
        assert list(again) == list(values) and isinstance(again, Listed)


@pytest.mark.parametrize(
    "typed, number",
    [("８.１.１", "8.1.1"), ("１１.２", "11.2"), ("９.９", "9.9"), (" ４ ", "4")],
)
def test_a_watchs_srv_is_read_as_the_search_reads_it(typed: str, number: str) -> None:
    """The search folds full-width digits (NFKC) and found records by `８.１.１`; a watch on
    the same text was refused (audit 67b)."""
    assert build_search(srv=typed).srvs[-1] == number
    assert watch_spec({"name": "w", "srvs": [typed]}).srvs == Listed([number])


@pytest.mark.parametrize("typed", ["٤.١.١", "۴.۱.۱", "४.१.१", "4.١", "٤ read"])
def test_an_srv_in_another_scripts_digits_is_refused_by_both(typed: str) -> None:
    """An SRV number is the digits 0-9, full width folded to them; the search took Arabic-Indic
    digits for a title's words and answered nothing without a word (audit 67b)."""
    with pytest.raises(InvalidField) as refused:
        build_search(srv=typed)
    assert refused.value.field == "srv"
    assert "digits 0-9" in str(refused.value)
    with pytest.raises(InvalidWatch):
        watch_spec({"name": "w", "srvs": [typed]})
