"""Codes and numbers from outside are ASCII, checked exactly as they are stored (issue 10,
finding 6): Unicode case mapping and digit parsing let other strings pass for valid ones."""

from __future__ import annotations

import pytest

from servicetrail.domain.ids import (
    InvalidValue,
    is_response_code,
    party_id,
    role_code,
    whole_number,
)


@pytest.mark.parametrize("raw", ["NORTHPOWER", "N0RTH_POWER-2", "X", "A" * 32])
def test_party_id_accepts_ascii_upper_case_codes(raw: str) -> None:
    assert party_id(raw) == raw


@pytest.mark.parametrize(
    "raw",
    [
        "\u0131NC",  # dotless i: its upper case is I
        "STRA\u00dfE",  # sharp s: its upper case is SS
        "supa",
        "Supa",  # lower case would be a second Party beside SUPA
        "\uff29\uff33",  # fullwidth IS
        "NORTH POWER",
        "NORTH!",
        "",
        "A" * 33,
        "NORTH\n",
    ],
)
def test_party_id_refuses_anything_but_what_the_spec_allows(raw: str) -> None:
    with pytest.raises(InvalidValue, match="party_id"):
        party_id(raw)


@pytest.mark.parametrize("check", [party_id, role_code])
def test_a_refused_code_is_quoted_short(check) -> None:
    """A 100,000-character party_id or role made a reject's one-line reason 100 KB (audit
    28a); every other reason quotes at most a few dozen characters of a value."""
    with pytest.raises(InvalidValue) as refused:
        check("x" * 100_000)
    assert len(str(refused.value)) < 300 and "100000 characters" in str(refused.value)


@pytest.mark.parametrize(
    "raw,stored",
    [
        ("IS", "IS"),
        ("is", "IS"),
        ("Rsa", "RSA"),
        ("X9", "X9"),
        # future codes (SPEC section 2: accepted) in party_id's characters
        ("new_role", "NEW_ROLE"),
        ("X-1", "X-1"),
        ("A" * 16, "A" * 16),
    ],
)
def test_role_code_is_ascii_upper_cased(raw: str, stored: str) -> None:
    assert role_code(raw) == stored


@pytest.mark.parametrize("raw", ["\uff29\uff33", "\u0131s", "I S", "", "A" * 17, "I.S", "IS\n"])
def test_role_code_refuses_non_ascii_and_other_shapes(raw: str) -> None:
    with pytest.raises(InvalidValue, match="role"):
        role_code(raw)


def test_response_codes_are_ascii_letters_and_digits() -> None:
    assert is_response_code("E4") and is_response_code("I99") and is_response_code("A" * 16)
    for bad in ("\uff25\uff14", "E\u0664", "E-4", "", "A" * 17, "E4\n"):
        assert not is_response_code(bad), bad


def test_whole_numbers_are_ascii_digits_only() -> None:
    assert whole_number("0") == 0 and whole_number("1000") == 1000
    for bad in ("\u0663", "1_0", "+5", "-5", " 5", "5 ", "1e3", "", "\uff15", "1" * 20):
        with pytest.raises(InvalidValue):
            whole_number(bad)


@pytest.mark.parametrize(
    ("check", "raw", "named"),
    [
        (party_id, "\u212aINTYRE", "U+212A KELVIN SIGN"),
        (role_code, "\u212aS", "U+212A KELVIN SIGN"),
        (party_id, "N\u039fRTH", "U+039F GREEK CAPITAL LETTER OMICRON"),
    ],
)
def test_a_refused_code_names_the_character_that_only_looks_ascii(check, raw, named) -> None:
    """'KS' with a Kelvin sign was refused as "must be ... ASCII letters: 'KS'", which reads
    as valid: the reason names the character, so the operator can find it in the file."""
    with pytest.raises(InvalidValue) as refused:
        check(raw)
    assert f"({named} is not ASCII)" in str(refused.value)


def test_an_eui64_that_only_looks_right_names_its_character() -> None:
    from servicetrail.domain.ids import eui64

    with pytest.raises(InvalidValue, match=r"U\+2010 HYPHEN is not ASCII"):
        eui64("00\u2010DB-12-00-00-00-01-41")
