"""The SRV catalogue of DUIS 5.x."""
from __future__ import annotations

from servicetrail.domain.catalogue import CATALOGUE, is_non_device, search_srvs, srv_title


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
