"""The SRV catalogue of DUIS 5.x."""

from __future__ import annotations

from pathlib import Path

from servicetrail.domain.catalogue import CATALOGUE, is_non_device, search_srvs, srv_title
from tests.conftest import beside_the_checkout


def test_the_catalogue_holds_the_129_srvs() -> None:
    assert len(CATALOGUE) == 129
    assert all(s.title.strip() for s in CATALOGUE.values())
    assert all(key == s.srv for key, s in CATALOGUE.items())


def test_known_titles() -> None:
    assert srv_title("4.1.1") == "Read Instantaneous Import Registers"
    assert srv_title("1.1.1") == "Update Import Tariff (Primary Element)"
    assert srv_title("8.2") == "Read Inventory"
    assert srv_title("11.2") == "Read Firmware Version"


def test_an_unknown_srv_still_gets_a_label_naming_it() -> None:
    label = srv_title("99.9.9")
    assert label and "99.9.9" in label
    assert label != srv_title("4.1.1")


def test_no_srv_has_no_title() -> None:
    # alerts carry no SRV
    assert srv_title("") == ""


def test_non_device_srvs() -> None:
    assert is_non_device("8.2")
    assert is_non_device("12.2")
    assert not is_non_device("4.1.1")
    assert not is_non_device("99.9")


def test_catalogue_fields() -> None:
    read = CATALOGUE["4.1.1"]
    assert set(read.eligible_roles) == {"IS", "GS", "ED", "GT"}
    assert not read.critical and not read.non_device
    assert "ESME" in read.target_device_types
    assert CATALOGUE["1.1.1"].critical


def test_search_srvs_by_number_and_words() -> None:
    assert search_srvs("4.1.1") == ["4.1.1"]
    assert search_srvs("  ") == []
    found = search_srvs("firmware")
    assert "11.2" in found
    assert all("firmware" in CATALOGUE[s].title.lower() for s in found)
    family = search_srvs("4.1")
    assert {"4.1.1", "4.1.2", "4.1.3", "4.1.4"} <= set(family)
    assert all(s.startswith("4.1.") for s in family)


def test_title_words_match_in_any_order_after_a_leading_number() -> None:
    found = search_srvs("firmware read")
    assert "11.2" in found  # Read Firmware Version
    assert all("firmware" in CATALOGUE[s].title.lower() for s in found)
    assert all("read" in CATALOGUE[s].title.lower() for s in found)
    assert search_srvs("11.2 firmware") == ["11.2"]
    shown = f"4.1.1 {CATALOGUE['4.1.1'].title}"  # a results row, copied as the screen shows it
    assert search_srvs(shown) == ["4.1.1"]
    assert search_srvs("4.1.1 firmware") == []  # the number and the words must agree
    assert search_srvs("zebra firmware") == []


DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63\uff0d"


def test_every_title_is_the_reference_catalogues_as_duis_gives_it() -> None:
    """An item's srv_title is the catalogue's title, dashes included: DUIS writes 8.14.3 and
    8.14.4 with an en dash, their siblings with a hyphen. (They were made ASCII hyphens; a
    title compared with the catalogue then differed; SPEC audit, session 17.) Read here with
    the csv module from ../shared, not through the generated table."""
    import csv

    path = beside_the_checkout(
        Path(__file__).resolve().parents[3] / "shared" / "reference" / "srv_catalogue.csv"
    )
    with open(path, newline="", encoding="utf-8") as f:
        reference = {row["srv"]: row["title"] for row in csv.DictReader(f)}
    assert {s.srv: s.title for s in CATALOGUE.values()} == reference
    assert srv_title("8.14.3") == "Communications Hub Status Update \u2013 Fault Return"
    assert srv_title("8.14.1") == "Communications Hub Status Update - Install Success"


def test_a_title_is_found_whatever_dash_case_or_spacing_the_analyst_types() -> None:
    fault_returns = {"8.14.3", "8.14.4"}
    for dash in "-" + DASHES:
        for typed in (
            f"Status Update {dash} Fault Return",
            f"status update{dash}fault return",
            f"STATUS  UPDATE {dash}FAULT RETURN",
        ):
            assert set(search_srvs(typed)) == {"8.14.3"}, typed
        assert set(search_srvs(f"update {dash} install")) == {"8.14.1", "8.14.2"}, dash
    assert set(search_srvs("fault return")) == fault_returns
    # a hyphen inside a word is folded the same way on both sides
    assert search_srvs("pre–notification") == search_srvs("Pre-notification") != []


def test_title_search_matches_nothing_it_should_not() -> None:
    assert search_srvs("Status Update - Nothing Like This") == []
    any_dash = set("-" + DASHES)
    assert search_srvs("\u2013") == [s for s in CATALOGUE if set(CATALOGUE[s].title) & any_dash]
