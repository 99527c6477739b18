"""Hostile XML refused before and as a DUIS document is parsed (SPEC section 4).

A document with a DOCTYPE or an entity declaration is rejected outright, not defused; the
parser never loads a DTD, expands an entity or touches the network. Documents over
SERVICETRAIL_MAX_DUIS_BYTES (settings) are refused before parsing; below it, large text nodes (an
11.1 firmware image is up to 10,240,000 octets of base64) parse. What the document says is
ingest.duis's business; this module only decides whether it is parsed at all.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from lxml import etree

from ..domain.ids import InvalidValue, shown

# A DOCTYPE (and with it every entity declaration) can stand only in the prolog, after any
# white space, comments and processing instructions: what follows them is either `<!` (a
# DOCTYPE, or mark-up no parser takes) or the root element. The words alone anywhere (in a
# comment, a CDATA section of a signature) were refused as a DOCTYPE (audit 45a).
# Possessive (`*+`): a plain `*` kept a backtracking entry for each comment or processing
# instruction it stepped over, 700 MB for 16 MiB of `<?a?>`, though nothing follows to need one.
_PROLOG_MISC = re.compile(rb"(?:[ \t\r\n]++|<\?.*?\?>|<!--.*?-->)*+", re.DOTALL)
_UTF8_BOM = b"\xef\xbb\xbf"
# Large text (a firmware image) is welcome, a multitude of tiny elements is not: 16 MiB of
# `<a/>` parses into 4 million elements and half a gigabyte. Counting `<` is a C scan, and
# base64, a DUIS document's bulk, never holds one.
MAX_MARKUP = 100_000
# huge_tree lifts libxml2's 10 MB cap on one text node (a firmware image); DTDs, entities
# and the network stay off, and the size limit above bounds the whole document
_HARDENED: dict[str, Any] = dict(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=True,
    remove_comments=False,
)
_PARSER = etree.XMLParser(**_HARDENED)
# a capture's document is text already, handed over as UTF-8: the encoding its declaration
# names is how it was once stored, not how these bytes are (UTF-16 failed to parse, and
# ISO-8859-1 would have read every accented letter as two; audit 23c)
_TEXT_PARSER = etree.XMLParser(encoding="utf-8", **_HARDENED)


def hardened_root(document: bytes, in_utf8: bool, limit: int | None) -> etree._Element:
    """The document's root element, parsed only if nothing here refuses it. `in_utf8`: the
    bytes are text already encoded as UTF-8, whatever the declaration names (a JSON Lines
    capture's). `limit`: the most bytes taken (None: any)."""
    if limit is not None and len(document) > limit:
        raise InvalidValue(
            f"DUIS document over the {limit}-byte limit (SERVICETRAIL_MAX_DUIS_BYTES)"
        )
    # counted first, a C scan: it bounds how much prolog _declares_dtd steps over
    if document.count(b"<") > MAX_MARKUP:
        raise InvalidValue(
            f"DUIS document with over {MAX_MARKUP} elements refused (XML hardening): no DUIS "
            f"message has that many, and a parsed tree costs about 130 bytes an element"
        )
    if _declares_dtd(document, in_utf8=in_utf8):
        raise InvalidValue(
            "DUIS document with a DOCTYPE or entity declaration refused (XML hardening)"
        )
    try:
        root = etree.fromstring(document, _TEXT_PARSER if in_utf8 else _PARSER)
    except etree.XMLSyntaxError as e:
        # one line, as SPEC's reasons are: libxml2 ends some of its own with a line break
        raise InvalidValue(f"not well-formed XML: {' '.join(str(e.msg).split())}") from None
    if (
        root.getroottree().docinfo.internalDTD is not None
    ):  # an encoding _declares_dtd does not know as libxml2 does
        raise InvalidValue(
            "DUIS document with a DOCTYPE or entity declaration refused (XML hardening)"
        )
    return root


# How libxml2 reads a document that does not begin in ASCII: its byte order mark, else its
# first characters (XML 1.0 appendix F)
_WIDE_STARTS = (
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
    (b"<\x00\x00\x00", "utf-32-le"),
    (b"\x00\x00\x00<", "utf-32-be"),
    (b"<\x00?\x00", "utf-16-le"),
    (b"\x00<\x00?", "utf-16-be"),
)
_XML_DECLARATION_STARTS = (b"<?xml ", b"<?xml\t", b"<?xml\r", b"<?xml\n")
# the encoding an XML declaration names
_DECLARED_ENCODING = re.compile(
    rb"encoding[ \t\r\n]*=[ \t\r\n]*[\"']([A-Za-z][A-Za-z0-9._-]*)[\"']"
)
# the encodings that write every ASCII character as that ASCII byte, so that a DOCTYPE's
# `<!` is those bytes
_ASCII_WRITTEN = re.compile(
    r"(?:utf-?8|(?:us-)?ascii|iso[-_]?8859-\d+|latin-?1|(?:windows|cp)-?125\d)\Z", re.IGNORECASE
)


def _declares_dtd(document: bytes, in_utf8: bool) -> bool:
    """Whether the prolog holds a DOCTYPE, read before any parser sees the document, in the
    encoding libxml2 will read it in (`in_utf8`: UTF-8, whatever it declares). Found only
    after parsing, an entity of a million elements written as `&#60;a/>` (which the markup
    count does not see) had cost 274 MB and a second first, in UTF-7 or UTF-16."""
    if in_utf8:
        return _prolog_declares(document)
    head = document[:2]
    if b"\x00" in head or head in (b"\xff\xfe", b"\xfe\xff"):  # only so for these
        for mark, encoding in _WIDE_STARTS:
            if document.startswith(mark):
                return _prolog_declares(document.decode(encoding, "replace").encode("utf-8"))
    if document.startswith(_UTF8_BOM):  # which libxml2 reads as UTF-8, whatever it declares
        return _prolog_declares(document)
    # `<?xml` and white space: `<?xml-stylesheet encoding="UTF-16"?>` is a processing
    # instruction, after which libxml2 reads on in UTF-8
    declaration = document.startswith(_XML_DECLARATION_STARTS)
    close = document.find(b"?>") if declaration else -1  # its white space is unbounded
    declared = _DECLARED_ENCODING.search(document, 0, close) if close > 0 else None
    if declared is None or _ascii_written(declared[1]):
        return _prolog_declares(document)
    name = declared[1].decode("ascii")
    try:  # the declaration is read in ASCII; libxml2 reads what follows it as it says
        rest = document[close + 2 :].decode(name, "replace")
    except LookupError:  # a prolog that cannot be read here might hold anything
        raise InvalidValue(
            f"DUIS document in an encoding not known here ({shown(name)}) refused (XML hardening)"
        ) from None
    return _prolog_declares(rest.encode("utf-8"))


@lru_cache(maxsize=64)  # a trail names one or two encodings
def _ascii_written(name: bytes) -> bool:
    return _ASCII_WRITTEN.match(name.decode("ascii")) is not None


def _prolog_declares(document: bytes) -> bool:
    """_declares_dtd for a document in UTF-8 (with or without its byte order mark)."""
    start = len(_UTF8_BOM) if document.startswith(_UTF8_BOM) else 0
    end = _PROLOG_MISC.match(document, start).end()  # type: ignore[union-attr]
    # an unterminated comment is left to the parser, which says what is wrong with it
    return document.startswith(b"<!", end) and not document.startswith(b"<!--", end)
