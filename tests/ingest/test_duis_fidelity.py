"""DUIS read as the DCC's own tooling and the schema read it (audit 45a): what a Request ID
is, which forms a CommandVariant takes, which documents hold a DOCTYPE.

Every document here is built by hand and, where it is meant to be taken, checked against the
vendored DUIS 5.4 schema first."""

from __future__ import annotations

import tracemalloc
from datetime import datetime, timezone

import pytest
from lxml import etree

from servicetrail.domain.ids import InvalidValue, RequestId
from servicetrail.ingest.duis import parse_document

NS = 'xmlns:sr="http://www.dccinterface.co.uk/ServiceUserGateway"'
USER = "90-B3-D5-1F-30-01-00-00"
ESME = "00-DB-12-34-56-78-90-A0"
AT = datetime(2026, 3, 1, tzinfo=timezone.utc)


def request(request_id: str, prolog: str = "", signature: str = "") -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>{prolog}<sr:Request {NS} schemaVersion="5.4">'
        f"<sr:Header><sr:RequestID>{request_id}</sr:RequestID>"
        "<sr:CommandVariant>1</sr:CommandVariant><sr:ServiceReference>4.1</sr:ServiceReference>"
        "<sr:ServiceReferenceVariant>4.1.1</sr:ServiceReferenceVariant></sr:Header>"
        f"<sr:Body><sr:ReadInstantaneousImportRegisters/></sr:Body>{signature}</sr:Request>"
    )


@pytest.mark.parametrize(
    "written",
    [
        f"{USER} :{ESME}:7",
        f"{USER}: {ESME}:7",
        f"{USER}:{ESME} :7",
        f"{USER}\t:{ESME}:7",
    ],
)
def test_white_space_inside_a_request_id_is_no_request_id(written):
    """RequestIDType is an xs:token under a pattern with no white space: `U :D:7` is no
    Request ID (the DCC's parser reads an originator ending in a space), and it was stored
    as `U:D:7`, tied to a request it may not be."""
    with pytest.raises(InvalidValue, match="not a Request ID"):
        RequestId.parse(written)
    with pytest.raises(InvalidValue, match="not a Request ID"):
        parse_document(request(written).encode(), AT)


def test_white_space_around_a_whole_request_id_is_still_taken():
    """xs:token's collapse removes white space at both ends: that much is the schema's."""
    record = parse_document(request(f"\n  {USER}:{ESME}:7 \n").encode(), AT)
    assert record.request_id == f"{USER}:{ESME}:7"


@pytest.mark.parametrize(
    "prolog, signature",
    [
        ("<!-- not a <!DOCTYPE x> -->", ""),
        ("", '<!-- <!ENTITY x "y"> -->'),
        (
            "",
            "<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"><ds:Object>"
            "<![CDATA[<!DOCTYPE x [<!ENTITY y \"z\">]>]]></ds:Object></ds:Signature>",
        ),
    ],
)
def test_a_doctype_only_mentioned_in_a_comment_or_cdata_is_no_doctype(prolog, signature):
    """A document with a DOCTYPE is rejected; one that only mentions the words in a comment or
    CDATA section has none, and was rejected with a reason saying it had."""
    record = parse_document(request(f"{USER}:{ESME}:8", prolog, signature).encode(), AT)
    assert record.request_id == f"{USER}:{ESME}:8"


@pytest.mark.parametrize(
    "prolog",
    [
        '<!DOCTYPE sr:Request [<!ENTITY x "y">]>',
        '<!-- a comment first --><?pi x?>\n<!doctype sr:Request SYSTEM "http://127.0.0.1:9/x">',
        "<!DOCTYPE sr:Request>",
    ],
)
def test_a_doctype_in_the_prolog_is_still_refused(prolog):
    with pytest.raises(InvalidValue, match="DOCTYPE or entity declaration refused"):
        parse_document(request(f"{USER}:{ESME}:9", prolog).encode(), AT)


def test_a_doctype_after_a_byte_order_mark_is_still_refused():
    document = "\ufeff" + request(f"{USER}:{ESME}:10", '<!DOCTYPE sr:Request [<!ENTITY x "y">]>')
    with pytest.raises(InvalidValue, match="DOCTYPE or entity declaration refused"):
        parse_document(document.encode(), AT)


def variant_request(variant: str) -> bytes:
    return (
        request(f"{USER}:{ESME}:11")
        .replace("<sr:CommandVariant>1<", f"<sr:CommandVariant>{variant}<")
        .encode()
    )


@pytest.mark.parametrize("written, meant", [("01", 1), ("+1", 1), ("0008", 8), (" 4\n", 4)])
def test_a_command_variant_in_any_lexical_form_of_the_schema_is_taken(duis_schema, written, meant):
    """CommandVariant is an xs:positiveInteger: `01` and `+1` are 1 to the schema and to the
    DCC's parser, and were refused."""
    document = variant_request(written)
    assert duis_schema.validate(etree.fromstring(document)), duis_schema.error_log
    assert parse_document(document, AT).command_variant == meant


@pytest.mark.parametrize("written", ["0", "9", "-1", "+", "1.0", "+-1", "10", "٣"])
def test_a_command_variant_that_is_no_integer_1_to_8_is_still_refused(written):
    with pytest.raises(InvalidValue, match="CommandVariant must be 1-8"):
        parse_document(variant_request(written), AT)


def test_reading_a_long_prolog_keeps_no_memory_for_each_instruction():
    """The prolog's reading kept a backtracking entry for every processing instruction it
    stepped over: 20 MiB for these 99,000, 700 MiB for 16 MiB of them."""
    prolog = "<?a?>" * 99_000
    document = request(f"{USER}:{ESME}:12", prolog).encode()
    tracemalloc.start()
    try:
        record = parse_document(document, AT)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert record.request_id == f"{USER}:{ESME}:12"
    assert peak < 4 * len(document)  # the document's text, not a multiple of its prolog


@pytest.mark.parametrize(
    "encoding, declared, mark",
    [
        ("utf-16-le", "UTF-16", b"\xff\xfe"),
        ("utf-16-be", "UTF-16", b""),
        ("utf-32-le", "UTF-32", b""),
        ("utf-7", "UTF-7", b""),
    ],
)
def test_a_doctype_in_another_encoding_is_refused_before_it_is_parsed(encoding, declared, mark):
    """Seen only by docinfo after the parse, a DOCTYPE whose entity held a million elements
    written as `&#60;a/>` (unseen by the markup count) cost 274 MB and a second before its
    refusal. A document broken after its DOCTYPE shows which check refused it: the parser
    says "not well-formed"."""
    prolog = '<!DOCTYPE sr:Request [<!ENTITY a "&#60;a/>">]><broken'
    # the declaration's white space as long as it likes: it was looked for in 1024 bytes
    text = request(f"{USER}:{ESME}:13", prolog).replace(
        ' encoding="UTF-8"', " " * 2000 + f'encoding="{declared}"', 1
    )
    if encoding == "utf-7":  # `<!` as UTF-7 may spell it, which no byte search for `<!` finds
        end = text.index("?>") + 2
        document = text[:end].encode() + text[end:].replace("<!", "+ADwAIQ-").encode()
    else:
        document = mark + text.encode(encoding)
    with pytest.raises(InvalidValue, match="DOCTYPE or entity declaration refused"):
        parse_document(document, AT)


def test_a_processing_instruction_naming_an_encoding_is_no_declaration():
    """libxml2 reads on in UTF-8 after `<?xml-stylesheet encoding="UTF-16"?>`; read as
    UTF-16, the prolog's DOCTYPE was unseen until the parse."""
    prolog = '<!DOCTYPE sr:Request [<!ENTITY a "&#60;a/>">]><broken'
    text = request(f"{USER}:{ESME}:15", prolog).replace(
        '<?xml version="1.0" encoding="UTF-8"?>', '<?xml-stylesheet encoding="UTF-16"?>'
    )
    with pytest.raises(InvalidValue, match="DOCTYPE or entity declaration refused"):
        parse_document(text.encode(), AT)


def test_a_utf_8_byte_order_mark_outweighs_the_declaration():
    """libxml2 reads a document after a UTF-8 byte order mark as UTF-8, whatever its
    declaration says; read as the declaration said, its DOCTYPE was unseen until the parse."""
    prolog = '<!DOCTYPE sr:Request [<!ENTITY a "&#60;a/>">]><broken'
    text = request(f"{USER}:{ESME}:16", prolog).replace('"UTF-8"', '"UTF-16"', 1)
    with pytest.raises(InvalidValue, match="DOCTYPE or entity declaration refused"):
        parse_document(b"\xef\xbb\xbf" + text.encode(), AT)


def test_an_encoding_whose_prolog_cannot_be_read_here_is_refused():
    """libxml2 reads some encodings Python has no codec for: such a prolog might hold a DOCTYPE
    that only the parse would find, at the parse's cost."""
    document = request(f"{USER}:{ESME}:14").replace('"UTF-8"', '"EBCDIC-US"', 1).encode()
    with pytest.raises(InvalidValue, match="encoding not known here"):
        parse_document(document, AT)
