"""What the screen shows, formatted: pure functions of values, no request, no store."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from .. import __version__
from ..domain.duis_terms import (
    NON_DEVICE,
    PRE_COMMAND,
    SIGNED_COMMANDS,
    command_variant_text,
    execution_text,
)
from ..domain.ids import MOST_STACKED_MARKS, InvalidValue, shown, whole_number
from ..domain.model import KNOWN_ROLES, RELATION_LABELS, role_name
from ..domain.records import REPORT_FIELDS
from ..domain.response_codes import ERROR, INFORMATION, WARNING, code_category, explain_code, legend
from ..domain.search import Cursor, Search
from ..domain.times import WRITE_A_TIME, format_time, parse_bound, seconds_text
from ..domain.triggers import DEFAULT_WINDOW_MINUTES, window_minutes
from ..domain.visibility import Decision
from ..domain.watches import split_list

CODE_CLASSES = {INFORMATION: "rc-ok", WARNING: "rc-warn", ERROR: "rc-error"}
KIND_LABELS = {
    "request": "Request",
    "acknowledgement": "Acknowledgement",
    "response": "Response",
    "device_alert": "Device alert",
    "dcc_alert": "DCC alert",
}
SCOPES = (("all", "All I may see"), ("own", "Mine only"), ("others", "Others (MP141)"))
SEARCH_FIELDS = ("device_id", "request_id", "srv", "kind", "from", "to", "scope")
FIELD_LABELS = {
    "device_id": "Device ID",
    "request_id": "Request ID",
    "srv": "SRV",
    "kind": "Kind",
    "from": "From",
    "to": "To",
    "scope": "Show",
    "cursor": "Page",
}
EMPTY_NOTE = (
    "No records match — note MP141 shows other Users’ traffic only for devices you were "
    "responsible for at the time, and never their alerts."
)
# the windows offered on a record page; the API takes any 1..10080 minutes
TRIGGER_WINDOWS = (
    (60, "1 hour"),
    (360, "6 hours"),
    (DEFAULT_WINDOW_MINUTES, "24 hours"),
    (10080, "7 days"),
)
# an alert or a response is what a viewer asks "what caused this?" about
TRIGGERED_KINDS = ("response", "device_alert", "dcc_alert")
MAX_PAGE_NUMBER = 10**6


def code_help(code: str | None, kind: str = "") -> str:
    return explain_code(code, kind) if code else ""


def code_name(code: str | None, kind: str = "") -> str:
    """A code's meaning in a few words ("Acknowledgement", "Failed authorisation"): what a
    screen reader says of it in a table, where the whole explanation, 170 characters for I99
    on every row, was read out each time (audit 43c). The title keeps the whole."""
    meaning = code_help(code, kind)
    return re.split(r"[:;]", meaning, maxsplit=1)[0]


def code_class(code: str | None, kind: str = "") -> str:
    return CODE_CLASSES.get(code_category(code, kind), "rc-other") if code else ""


def show_time(iso: str) -> str:
    """`2025-02-10T10:00:05.12Z` as `2025-02-10 10:00:05.120`: milliseconds always, so that
    times line up in a column and compare at a glance (dropping trailing zeros showed
    `10:00:05.12` beside `10:00:05.708`, audit 42f); all six digits when a time has a part
    of a millisecond, which a DCC time rarely has and which must not be hidden. The column
    or the time says UTC; the `datetime` attribute keeps the exact value."""
    day, _, clock = iso.removesuffix("Z").partition("T")
    whole, _, fraction = clock.partition(".")
    fraction = fraction.ljust(6, "0")
    return f"{day} {whole}.{fraction if fraction[3:].strip('0') else fraction[:3]}"


def show_clock_time(iso: str) -> str:
    """A time this server's clock wrote (an access log entry's, a watch event's match), to the
    millisecond as the records' times are shown: its microseconds are the clock's, no DCC's,
    and showed `16:44:34.338544` on Who looked beside `10:02:00.123` on Search (review of the
    screen, 64d). Cut, not rounded, so a time is never shown later than it was; the
    `datetime` attribute keeps the exact value."""
    whole, dot, fraction = iso.removesuffix("Z").partition(".")
    return show_time(f"{whole}.{fraction[:3]}Z" if dot else iso)


def show_instant(at: datetime) -> str:
    """A stored time (a Responsibility's bounds) shown as the records' times are: to the
    minute, an interval from 10:00:30.5 read as 10:00 and seemed to take in the records of
    the half minute before it; the year padded, as `1-01-01` was (audit 25b)."""
    return show_time(format_time(at))


def role_label(role: str | None) -> str:
    """`Import Supplier (IS)`; a future role code says how it is treated."""
    if not role:
        return ""
    return f"{KNOWN_ROLES[role]} ({role})" if role in KNOWN_ROLES else role_name(role)


def kind_in_sentence(kind: str) -> str:
    """A kind of record inside a sentence ("before this device alert"): lower case but for
    the DCC's name, which a plain `lower` made "this dcc alert" (review of the screen, 56)."""
    return " ".join(w if w.isupper() else w.lower() for w in KIND_LABELS.get(kind, kind).split(" "))


def before_text(seconds: int) -> str:
    """A trigger's `seconds_before` in words: "2 h 5 min before", "3 s after"."""
    remaining = abs(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if remaining >= size:
            parts.append(f"{remaining // size} {unit}")
            remaining %= size
    if remaining or not parts:
        parts.append(f"{remaining} s")
    return " ".join(parts[:2]) + (" after" if seconds < 0 else " before")


# the menu's section of each page under another's address: a record and a Device are opened
# from the search's results, a watch's delete form from the Watches page. The proofs' page is
# in none: it is a record's, a Who looked's (the access logs) and an auditor's, who has no
# Search, and marked as the search's it told the analyst to look there (audit 63h)
_SECTIONS = (("/records/", "/"), ("/devices/", "/"), ("/watches/", "/watches"))


def section_of(path: str) -> str:
    """The menu link a page is under: a record page marked none, and the menu did not say
    where in the screen the analyst was (review of the screen, 54d)."""
    return next((section for start, section in _SECTIONS if path.startswith(start)), path)


# what every template may call
# A record page shows at most this much of a payload, laid out; the whole is a download away.
# A 16 MiB payload of small elements nested deep, laid out, made a 298 MB page, and 25
# responses of 1 MiB a 26 MB one (audit, session 16).
MAX_SHOWN_PAYLOAD = 64 * 1024  # = store.items.PAYLOAD_HEAD_CHARS: a page's exchange reads no more
# Characters that change how the text around them reads, or hide text in it (direction
# overrides and isolates, zero-width and invisible format characters, Unicode tags, controls
# other than tab, CR and LF, Unicode's line and paragraph separators), shown as marks: with a
# right-to-left override, "gnp.exe" read as "exe.png" and "0001" as "1000".
_UNSEEN = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\xad\u061c\u180e\u200b-\u200f\u202a-\u202e"
    "\u2028\u2029\u2060-\u206f\ufeff\ufff9-\ufffb\U000e0000-\U000e007f]"
)


TEMPLATE_GLOBALS = dict(
    code_help=code_help,
    code_name=code_name,
    code_class=code_class,
    code_legend=legend(),
    show_time=show_time,
    show_clock_time=show_clock_time,
    show_instant=show_instant,
    kind_labels=KIND_LABELS,
    kind_in_sentence=kind_in_sentence,
    command_variant_text=command_variant_text,
    pre_command=PRE_COMMAND,
    signed_commands=SIGNED_COMMANDS,
    non_device=NON_DEVICE,
    execution_text=execution_text,
    role_name=role_name,
    role_label=role_label,
    version=__version__,
    relation_labels=RELATION_LABELS,
    before_text=before_text,
    report_fields=REPORT_FIELDS,
    max_shown_payload=MAX_SHOWN_PAYLOAD,
)

# every time without an offset that the API's times take (an hour alone, a fraction of any
# length, a comma): `2025-02-10 09:30:00.1234567` was told to add Z in a field labelled UTC
_NAIVE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}(:\d{2}(:\d{2}([.,]\d+)?)?)?$")


def utc_field(value: str) -> str:
    """The form's time fields are labelled UTC, so a time typed without an offset means UTC."""
    value = value.strip()
    if _NAIVE_TIME.match(value):
        return value.replace(" ", "T") + "Z"
    return value


# what to write, said after a field's error: the reason alone ("not a date or a time", "must
# not be before from") left the analyst to guess a form the field takes
DEVICE_ID_EXAMPLE = "such as 00-DB-12-34-56-78-90-01"
_WRITE_IT_AS = {
    "device_id": f"Write its 8 pairs of hex digits, {DEVICE_ID_EXAMPLE}",
    "request_id": "Write it as the sender’s User ID, the Device ID and a counter, such as "
    "90-B3-D5-1F-30-01-03-00:00-DB-12-34-56-78-90-01:1001",
    "from": "Write a date, such as 2025-02-10, or a date and time, such as 2025-02-10 09:30",
    # To's own: a date is its midnight, which To leaves out (review of the screen, 64d)
    "to": "Write a date, such as 2025-02-11 (up to the end of the 10th), or a date and time, "
    "such as 2025-02-10 17:30",
}


# the API's reasons for a time, said in the analyst's words: "ISO-8601" is a standard's
# number, not a form anyone types (audit of every screen, 63h); the example follows
_TIME_WORDS = (
    ("not an ISO-8601 time", "not a date or a time"),
    ("(printable ASCII only)", "(a character no date or time has)"),
    ("(a T between its date and time)", "(a space or a T between its date and time)"),
)


def _in_analysts_words(message: str) -> str:
    # the reason only, before its quote: what was typed is quoted as typed
    reason, colon, typed = message.partition(": ")
    for jargon, words in _TIME_WORDS:
        reason = reason.replace(jargon, words)
    return reason + colon + typed


def said_on_screen(errors: dict[str, str], values: Mapping[str, str]) -> dict[str, str]:
    """A form's errors by field, each with an example of what the field takes."""
    said = {}
    for name, message in errors.items():
        typed = values.get(name, "")
        if name in ("from", "to") and typed:
            # quoted as typed, not as read: the Z that utc_field adds was never typed (47d)
            message = message.replace(shown(utc_field(typed)), shown(typed.strip()))
            # the field's own example follows, in the form's words (a time there is UTC):
            # the API's, with its offset, said a second way to write it
            message = message.removesuffix(f". {WRITE_A_TIME}")
            message = _in_analysts_words(message)
        if name == "to" and message == "must not be before from":
            said[name] = _to_before_from(values.get("from", ""))
        elif name in _WRITE_IT_AS:
            # a reason ending in a cut quote's "..." ends its sentence with it (47d)
            stop = "" if message.endswith((".", "\u2026")) else "."
            said[name] = f"{message}{stop} {_WRITE_IT_AS[name]}."
        else:
            said[name] = message
    return said


def _to_before_from(start: str) -> str:
    try:
        later = (parse_bound(utc_field(start)) + timedelta(days=1)).date().isoformat()
    except InvalidValue:  # From was read before To was: it cannot fail here
        later = "a later date"
    except OverflowError:  # From on 9999-12-31 has no next date: it was a 500 (audit 45e)
        later = "a later time that day"
    return (
        f"is before From ({start}), so nothing could match. Write a later time, such as "
        f"{later}, or leave To empty for everything after From."
    )


def safe_next(target: str | None) -> str:
    """Only a path on this site may follow a sign-in (no open redirect)."""
    if (
        not target
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(ch) < 33 for ch in target)
        or target.startswith(("/login", "/logout"))
    ):
        return "/"
    return target[:2000]


_XML_PARSER_OPTIONS = dict(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    remove_blank_text=True,
    strip_cdata=False,  # shown as sent: `<![CDATA[<x>]]>`, not `&lt;x&gt;`
)


# A pile of combining diacritical marks on one character (their Unicode blocks), past the
# few a script needs: drawn, they cover the rows above (domain.ids.MOST_STACKED_MARKS). Names
# are refused at load for any pile of marks; this cuts the usual ones of a name stored before
_MARK = "[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]"
_PILED = re.compile(f"({_MARK}{{{MOST_STACKED_MARKS}}}){_MARK}+")


def readable(text: str) -> str:
    """Text with each character that would change how the rest reads shown as a mark, and a
    pile of combining marks cut to a few: a Party name stored before names were checked for
    them (the screen's <bdi> cannot hold a pop-isolate in), or a payload."""
    text = _PILED.sub(lambda m: f"{m.group(1)}⟨+{len(m.group()) - MOST_STACKED_MARKS} marks⟩", text)
    return _UNSEEN.sub(lambda m: f"⟨U+{ord(m.group()):04X}⟩", text)


@dataclass(frozen=True, slots=True)
class ShownPayload:
    text: str  # escaped by the template
    is_xml: bool
    cut: bool  # longer than MAX_SHOWN_PAYLOAD: the rest is in the download


def pretty_payload(payload: str) -> ShownPayload:
    """A payload as a record page shows it: XML pretty-printed when it parses safely (with
    what stands outside its root element), else the text as it is; cut at MAX_SHOWN_PAYLOAD,
    and each character that would change how the rest reads shown as a mark (⟨U+202E⟩).

    No DTD, no entities, no network: a payload that declares any is shown as plain text."""
    text, is_xml = _laid_out(payload) if len(payload) <= MAX_SHOWN_PAYLOAD else (payload, False)
    return ShownPayload(readable(text[:MAX_SHOWN_PAYLOAD]), is_xml, len(text) > MAX_SHOWN_PAYLOAD)


def _laid_out(payload: str) -> tuple[str, bool]:
    text = payload.strip()
    if not text.startswith("<") or "<!DOCTYPE" in text.upper() or "<!ENTITY" in text.upper():
        return payload, False
    # here, not at the top: lxml was 10 ms of CPU of every server process's start, for the
    # first record page that shows an XML payload (session 63)
    from lxml import etree

    try:
        # in UTF-8, as these bytes are: the declaration says how the text was once stored.
        # Read as it said, a capture's `encoding="ISO-8859-1"` showed `café` as `cafÃ©`, and
        # `encoding="UTF-7"` let a DOCTYPE spelled `+ADw-!DOCTYPE` past the test above
        parser = etree.XMLParser(encoding="utf-8", **_XML_PARSER_OPTIONS)
        root = etree.fromstring(text.encode("utf-8"), parser)
        if root.getroottree().docinfo.internalDTD is not None:
            return payload, False
        # the document, not its root alone: a comment or a processing instruction before or
        # after the root is part of what was sent
        pretty = etree.tostring(root.getroottree(), pretty_print=True, encoding="unicode")
    except (etree.XMLSyntaxError, ValueError):
        return payload, False
    declaration = XML_DECLARATION.match(text)  # serialised to text, the tree drops it
    shown = f"{declaration[0]}\n{pretty}" if declaration else pretty
    return shown.rstrip("\n"), True


XML_DECLARATION = re.compile(r"<\?xml\s[^?]*\?>")


def trigger_window(value: str | None) -> tuple[int, str]:
    """The record page's `window` (minutes): a bad one falls back to the default, and says so."""
    try:
        return window_minutes(value), ""
    except InvalidValue as e:
        return DEFAULT_WINDOW_MINUTES, f"Window {e}; showing 24 hours."


# past every field's own bound, so that the search refuses a value too long, as the API does:
# cut to 200, an SRV of 300 letters was searched as 200 and answered "Nothing found" (audit 25c)
LONGEST_SHOWN_BACK = 1000


def search_values(query: Mapping[str, str]) -> dict[str, str]:
    """The search form's fields as typed (trimmed, and cut short: they are shown back), a
    Device ID pasted in another tool's form written in the SSI's."""
    values = {name: query.get(name, "").strip()[:LONGEST_SHOWN_BACK] for name in SEARCH_FIELDS}
    values["device_id"] = pasted_device_id(values["device_id"])
    return values


_PASTED_EUI64 = re.compile(r"[0-9A-Fa-f]{2}(?:[-: ]?[0-9A-Fa-f]{2}){7}")


def pasted_device_id(text: str) -> str:
    """`00DB120000000141`, `00:DB:12:00:00:00:01:41` or spaced octets, as other tools write
    a Device ID, as `00-DB-12-00-00-00-01-41`: pasted into the search form they were a 422
    (audit 43c). Anything else is left as typed, for the search's own check to refuse."""
    if not _PASTED_EUI64.fullmatch(text):
        return text
    digits = re.sub("[-: ]", "", text).upper()
    return "-".join(digits[start : start + 2] for start in range(0, 16, 2))


# a Device ID printed as spaced octets (`00 DB 12 00 00 00 01 41`), alone between a list's
# separators: the list is split at white space, so each octet was refused alone (review 47j)
_SPACED_EUI64 = re.compile(r"(?<![^\s,;])[0-9A-Fa-f]{2}(?: [0-9A-Fa-f]{2}){7}(?![^\s,;])")


def stopped(seconds: float, what: str, narrow: str) -> str:
    """A read past its time limit, said on a page as two sentences with that page's own way
    to narrow it: the store's words, the API's and the command line's, began in lower case and
    named a Device ID and a Request ID on the Device and Who-looked pages, which have neither
    field (audit 53e)."""
    return f"{what} took longer than {seconds_text(seconds)} and was stopped. {narrow}"


def narrower(*ways: tuple[str, bool]) -> str:
    """A form's advice to narrow a read past its time limit: each way (its words, and whether
    the form already took it) not yet taken. A search for a Device past its limit was told to
    name a Device ID, and Who looked's for one person to name one (review of the screen, 54d)."""
    left = [way for way, taken in ways if not taken]
    return f"Narrow it: {', '.join(left[:-1])}{' or ' if len(left) > 1 else ''}{left[-1]}."


# a record page or a watch's events have no field to narrow: the generic page that a read past
# its limit got told them to name a Device ID or a Request ID (audit 53e)
TRY_AGAIN = "Try again in a moment; if it keeps happening, tell your servicetrail administrator."
SHORTEST_WINDOW = TRIGGER_WINDOWS[0]


def record_stopped(record_id: int, seconds: float, window: int | None) -> tuple[str, str]:
    """What a record page says when its reads pass the time limit, and the address to open it
    again reading less ("": none): its possible triggers, the widest of its reads, over the
    shortest look-back. `window`: the look-back, when the record was read and has triggers."""
    what = f"Reading record {record_id}"
    if window is None or window <= SHORTEST_WINDOW[0]:
        return stopped(seconds, what, TRY_AGAIN), ""
    over = dict(TRIGGER_WINDOWS).get(window, f"{window} minutes")
    shorter = (
        f"Its possible triggers are looked for over the {over} before it: open it with a "
        f"look-back of {SHORTEST_WINDOW[1]}, or try again in a moment."
    )
    return stopped(seconds, what, shorter), f"/records/{record_id}?window={SHORTEST_WINDOW[0]}"


def record_title(item: dict[str, Any]) -> str:
    """A record page's title, as its heading names it: "Record 812" alone told an analyst's
    tabs and history entries apart by number only (audit 53e)."""
    kind = KIND_LABELS.get(item["kind"], item["kind"])
    if item.get("srv"):
        return f"Record {item['id']}: {kind}, {item['srv']} {item.get('srv_title') or ''}".strip()
    code = f" {item['response_code']}" if item.get("response_code") else ""
    return f"Record {item['id']}: {kind}{code}"


def pasted_device_ids(text: str) -> list[str]:
    """A list of Device IDs as pasted into a form, each as `pasted_device_id` takes it: the
    spaced octets that it takes in the search form too (the watch form split them apart)."""
    joined = _SPACED_EUI64.sub(lambda found: pasted_device_id(found.group()), text)
    return [pasted_device_id(part) for part in split_list(joined)]


def page_number(text: str | None) -> int:
    """The results page's number, shown beside the rows; any nonsense is page 1."""
    try:
        return max(1, min(whole_number(text or "1"), MAX_PAGE_NUMBER))
    except InvalidValue:
        return 1


def older_triggers(older: Search, after: Cursor | None) -> dict[str, str]:
    """The query of a records search that goes on where a cut list of triggers stops (the
    API's Link, the page's): the requests sharing the Request ID, or the Device's requests in
    the window, from the last one listed."""
    query = {"device_id": older.device_id or "", "request_id": older.request_id or ""}
    query = {name: value for name, value in query.items() if value}
    query["kind"] = "request"
    if older.time_from is not None:
        query["from"] = format_time(older.time_from)
    if older.time_to is not None:
        query["to"] = format_time(older.time_to)
    if after is not None:
        query["cursor"] = after.encode()
    return query


def page_link(values: dict[str, str], *, at: str = "/", **extra: str) -> str:
    """A link to the page `at` with the form's values and `extra` (empty ones left out, and
    the search's default scope)."""
    query = {k: v for k, v in values.items() if v and not (k == "scope" and v == "all")}
    query.update({k: v for k, v in extra.items() if v})
    return f"{at}?{urlencode(query)}" if query else at


def exchange_entry(item: dict[str, Any], decision: Decision) -> dict[str, Any]:
    """One message of a record page's exchange: its badge, its payload laid out, and the
    relation that lets the viewer see it."""
    return {
        "item": item,
        "badge": decision.badge(),
        "payload": pretty_payload(item["payload"]) if "payload" in item else None,
        "relation": decision.interval.relation if decision.interval else "",
    }
