"""The search's word for white space alone, and the schema patterns written from it."""

from __future__ import annotations

import re

import pytest

from servicetrail.domain.ids import is_blank
from servicetrail.domain.search import (
    NOT_BLANK_PATTERN,
    SRV_TEXT_PATTERN,
    InvalidField,
    build_search,
)


def test_the_patterns_white_space_is_the_white_space_is_blank_strips():
    """The patterns spell out their white space (a schema's `\\s` is ECMA-262's, another
    set): each character of the Basic Multilingual Plane, alone, is blank exactly when the
    pattern refuses it; the SRV text's pattern also refuses its control characters."""
    not_blank, srv_text = re.compile(NOT_BLANK_PATTERN), re.compile(SRV_TEXT_PATTERN)
    for code in range(0xD800):  # past it, no white space; lone surrogates are no text
        char = chr(code)
        assert bool(not_blank.fullmatch(char)) is not is_blank(char), hex(code)
        if is_blank(char):
            assert not srv_text.fullmatch(char) and not srv_text.fullmatch(f"{char}{char}")
    assert not_blank.fullmatch("") and srv_text.fullmatch("")
    assert srv_text.fullmatch("\u3000power on\u00a0") and not srv_text.fullmatch("4.1\u200b")


def test_srv_text_refuses_what_reads_otherwise_on_a_who_looked_page():
    """The search's filters are shown on every Who looked page: an Arabic letter mark, a soft
    hyphen, a tag character or 160 accents on one letter were taken (audit 55f), where a
    right-to-left mark was refused. Four marks, as Vietnamese stacks, are text."""
    srv_text = re.compile(SRV_TEXT_PATTERN)
    for odd in ("\u061c", "\u00ad", "\u180e", "\u206a", "\ue000", "\u3164", "\u2800", "\u034f"):
        assert not srv_text.fullmatch(f"read{odd}x"), hex(ord(odd))
    for odd in (
        "read\u061cx",
        "read\U000e0041",
        "read\U0001d173",
        "Z" + "\u0301" * 5,
        "read\u3164x",  # a Hangul filler: a letter that draws nothing
        "read\u2800x",  # the blank braille pattern
    ):
        with pytest.raises(InvalidField) as refused:
            build_search(srv=odd)
        assert refused.value.field == "srv", odd
    assert build_search(srv="Vi\u1ec7\u0301\u0300t").srvs == ()
    assert build_search(srv="read").srvs
