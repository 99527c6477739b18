"""The search's word for white space alone, and the schema patterns written from it."""

from __future__ import annotations

import re

from servicetrail.domain.search import NOT_BLANK_PATTERN, SRV_TEXT_PATTERN, is_blank


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
