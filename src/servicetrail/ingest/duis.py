"""DUIS XML to SAT records by the table of SPEC section 4.1.

A document is parsed only as ingest.hostile_xml allows (no DOCTYPE, no entity, no network,
bounded in size and mark-up). Every field is checked against the schema's rules before it
becomes a record (SRVs against the catalogue, response codes against the XSD's list, Request
IDs against its pattern), so a value no writer can hold is a reject with a reason, never a
failure of its batch.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

from lxml import etree

from .. import settings
from ..domain.catalogue import is_non_device
from ..domain.ids import InvalidValue, RequestId, eui64, is_eui64, shown
from ..domain.model import Kind, SatRecord
from ..domain.response_code_data import DCC_ALERT_CODES
from ..domain.response_codes import check_response_code, check_srv
from .hostile_xml import hardened_root

NS = "http://www.dccinterface.co.uk/ServiceUserGateway"
_ALERT_CODE = re.compile(r"^(?:[0-9A-Fa-f]{2}){1,8}\Z")  # xs:hexBinary, as short as codes are
_DCC_ALERT_CODES = frozenset(DCC_ALERT_CODES)
FUTURE_DATED_ALERT_CODES = frozenset({"8F66", "8F67"})  # the schema's whole list
UTC = timezone.utc
XML_SPACE = " \t\r\n"  # what XML calls white space; str.strip() would also eat a no-break space


RA_NS = "http://www.dccinterface.co.uk/ResponseAndAlert"  # the MMC schema's, inside SMETS1's


def _q(name: str) -> str:
    return f"{{{NS}}}{name}"


def _in(element: etree._Element, *namespaces: str) -> bool:
    return isinstance(element.tag, str) and element.tag[1:].partition("}")[0] in namespaces


_REQUEST, _RESPONSE, _HEADER, _BODY = _q("Request"), _q("Response"), _q("Header"), _q("Body")
_REQUEST_ID, _RESPONSE_ID, _CODE, _TIME = (
    _q("RequestID"),
    _q("ResponseID"),
    _q("ResponseCode"),
    _q("ResponseDateTime"),
)
_VARIANT, _SRV, _EXECUTION = (
    _q("CommandVariant"),
    _q("ServiceReferenceVariant"),
    _q("ExecutionDateTime"),
)
_MESSAGE, _FUTURE = _q("ResponseMessage"), _q("FutureDatedDeviceAlertMessage")


def _children(element: etree._Element | None) -> dict[Any, etree._Element]:
    """An element's children by tag: one pass over them costs less than one lxml find(),
    and a message reads several (comments and processing instructions key by a function).
    Every element read this way (a Request or Response, its Header, a ResponseMessage) holds
    each child once in the schema: a second is refused, not one of the two taken (two
    RequestIDs stored the second's Device, which decides who sees the record; audit 23c)."""
    if element is None:
        return {}
    found: dict[Any, etree._Element] = {}
    for child in element:
        if child.tag in found and isinstance(child.tag, str):
            raise InvalidValue(f"{_local(child)} given twice in {_local(element)}")
        found[child.tag] = child
    return found


def _text(element: etree._Element) -> str:
    """An element's value as the schema reads it: its text with any comment or processing
    instruction inside left out (`.text` stops at the first: `E1<!---->9` was stored as E1,
    `...:10<?pi?>01` as counter 10; audit 23c). An element inside is no value."""
    if len(element) == 0:
        return element.text or ""
    if any(isinstance(child.tag, str) for child in element):
        raise InvalidValue(f"{_local(element)} holds an element where a value belongs")
    return "".join(element.itertext())


def _value(children: dict[Any, etree._Element], tag: str) -> str:
    found = children.get(tag)
    return _text(found).strip(XML_SPACE) if found is not None else ""


def _local(element: etree._Element) -> str:
    return element.tag.rpartition("}")[2] if isinstance(element.tag, str) else ""


def _child(parent: etree._Element | None, name: str) -> etree._Element | None:
    """The child of that local name in DUIS's namespace, else in the MMC schema's (SMETS1's
    inner parts mix the two). Not in any: an alert's code under another namespace was read
    as DUIS's (audit 29c)."""
    if parent is None:
        return None
    found = parent.find(_q(name))
    return found if found is not None else parent.find(f"{{{RA_NS}}}{name}")


def _child_text(parent: etree._Element | None, name: str) -> str:
    found = _child(parent, name)
    return _text(found).strip(XML_SPACE) if found is not None else ""


def _only_message(parent: etree._Element | None) -> etree._Element | None:
    """The message a Body holds: the schema's choice of one. The first of two was taken, and
    the second dropped without a word (a response and an alert: one of them lost; audit
    29c). Comments and processing instructions are not messages."""
    if parent is None:
        return None
    found = [child for child in parent if isinstance(child.tag, str)]
    if len(found) > 1:
        names = ", ".join(shown(_local(child)) for child in found[:3])
        raise InvalidValue(
            f"{_local(parent)} holds {len(found)} messages ({names}): the schema gives it one"
        )
    return found[0] if found else None


# xs:dateTime as DUIS writes it: a four-digit year, the T, seconds with any fraction, and an
# optional Z or +hh:mm / -hh:mm
XS_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})?"
)


_END_OF_DAY = re.compile(r"T24:00:00(?:\.0+)?(Z|[+-][0-9]{2}:[0-9]{2})?\Z")
MAX_OFFSET = timedelta(hours=14)  # xs:dateTime's timezone range


def duis_time(value: str, field: str, naive_is_utc: bool = False) -> datetime:
    """An xs:dateTime with an offset, as every time of a record's identity must be (SPEC
    section 4). `naive_is_utc`: for a time that only informs (ExecutionDateTime), one
    written without an offset is read as UTC, the DUIS default, rather than losing the request."""
    text = value.strip(XML_SPACE)
    if not text or len(text) > 40 or not XS_DATE_TIME.fullmatch(text):
        # checked before Python reads it: fromisoformat also takes a space for the T, +0100
        # and week dates, which the schema does not (audit, session 19)
        raise InvalidValue(f"{field}: not an xs:dateTime: {shown(text)}")
    # xs:dateTime's 24:00:00 is the first instant of the next day (fromisoformat refuses it)
    end_of_day = _END_OF_DAY.search(text)
    try:
        parsed = datetime.fromisoformat(
            text if end_of_day is None else f"{text[:11]}00:00:00{end_of_day.group(1) or ''}"
        )
        if end_of_day is not None:
            parsed += timedelta(days=1)
    except (ValueError, OverflowError):
        raise InvalidValue(f"{field}: not an xs:dateTime: {shown(text)}") from None
    offset = parsed.utcoffset()
    if offset is not None and abs(offset) > MAX_OFFSET:
        raise InvalidValue(f"{field}: an offset beyond +-14:00 is no xs:dateTime: {shown(text)}")
    if parsed.tzinfo is None and not naive_is_utc:
        raise InvalidValue(f"{field}: time without a UTC offset (add Z): {shown(text)}")
    try:
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except OverflowError:
        raise InvalidValue(f"{field}: time out of range: {shown(text)}") from None


def parse_document(document: bytes, logged_at: datetime | None) -> SatRecord:
    """One DUIS message. `logged_at` is the time the SAT logged a request (responses carry their
    own)."""
    return _parse(document, logged_at, None, settings.current().max_duis_bytes)


def parse_text(document: str, logged_at: datetime | None) -> SatRecord:
    """parse_document for a document already decoded (a JSON Lines capture), without decoding it
    again."""
    return _parse(document.encode("utf-8"), logged_at, document, settings.current().max_duis_bytes)


def derived_fields(payload: str, logged_at: datetime) -> tuple[datetime | None, str] | None:
    """The execution_at and subject_device_id that ingest derives from a DUIS payload (SPEC
    section 4.1), or None when the payload is not a DUIS message this reader takes."""
    try:
        # under no size limit: the payload was taken when stored, and a limit set lower since
        # made every larger payload a "changed" record (review 27e)
        record = _parse(payload.encode("utf-8"), logged_at, payload, limit=None)
    except (InvalidValue, ValueError):
        return None
    return record.execution_at, record.subject_device_id


def _parse(
    document: bytes, logged_at: datetime | None, text: str | None, limit: int | None
) -> SatRecord:
    """`limit`: the most bytes taken (None: any)."""
    root = hardened_root(document, text is not None, limit)
    payload = text if text is not None and "\x00" not in text else _as_text(document, root)
    if root.tag == _REQUEST:
        return _request(root, logged_at, payload)
    if root.tag == _RESPONSE:
        return _response(root, payload)
    raise InvalidValue(f"not a DUIS sr:Request or sr:Response: root element {shown(root.tag)}")


def _as_text(document: bytes, root: etree._Element) -> str:
    """The document as it came (signature intact); re-serialised only if it is not UTF-8."""
    if b"\x00" not in document:
        try:
            return document.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return etree.tostring(root.getroottree(), encoding="unicode")


# CommandVariant is an xs:positiveInteger: `01` and `+1` are the schema's 1 (and the DCC's
# parser reads them so), and were refused (audit 45a)
_VARIANT_TEXT = re.compile(r"\+?0*([1-8])\Z")


def _command_variant(header: dict[Any, etree._Element]) -> int:
    raw = _value(header, _VARIANT)
    found = _VARIANT_TEXT.match(raw)
    if found is None:
        raise InvalidValue(f"CommandVariant must be 1-8, not {shown(raw)}")
    return int(found.group(1))


def _request(root: etree._Element, logged_at: datetime | None, payload: str) -> SatRecord:
    top = _children(root)
    header = _children(top.get(_HEADER))
    request_id = RequestId.parse(_value(header, _REQUEST_ID))
    srv = check_srv(_value(header, _SRV))
    variant = _command_variant(header)
    if logged_at is None:
        raise InvalidValue("DUIS request without a logged_at time")
    message = _only_message(top.get(_BODY))
    if message is None:  # the schema's Body is a choice of one message, never empty
        raise InvalidValue("DUIS request without a Body message")
    non_device = is_non_device(srv)
    return SatRecord(
        logged_at,
        Kind.REQUEST,
        str(request_id),
        srv,
        request_id.originator,
        "" if non_device else request_id.target,
        "",
        payload,
        command_variant=variant,
        execution_at=_execution_at(message),
        subject_device_id=_named_device(message) if non_device else "",
    )


def _execution_at(message: etree._Element | None) -> datetime | None:
    """A future-dated command's ExecutionDateTime (3000-12-31: cancel the pending command).
    The XSD declares it in one place: first in the future-datable types of a request's body."""
    found = next(message.iterchildren(_EXECUTION), None) if message is not None else None
    return (
        duis_time(_text(found), "ExecutionDateTime", naive_is_utc=True)
        if found is not None
        else None
    )


def _named_device(within: etree._Element | None) -> str:
    """The first Device a body names (DeviceID, DeviceIDList, CommsHubDeviceID ...). Not the
    lists named otherwise (a FirmwareDistributionFailure's MeterIDs, a FirmwareUpgradeRequested's
    DeviceList; audit 45a): read since, an alert stored before would differ from its file
    read again, a conflict where a re-load must add nothing, and its leaf commits to the
    device_id it was stored with (review 45e)."""
    if within is None:
        return ""
    for element in within.iter():
        if "DeviceID" in _local(element) and not any(isinstance(c.tag, str) for c in element):
            # a DeviceIDList is one text of EUI-64s joined by commas: its first is the subject
            first = _text(element).strip(XML_SPACE).split(",", 1)[0].strip(XML_SPACE)
            if is_eui64(first):
                return eui64(first)
    return ""


def _response(root: etree._Element, payload: str) -> SatRecord:
    top = _children(root)
    message = _only_message(top.get(_BODY))
    # each said apart: an empty Body was said to be a response "without Header and Body"
    if _HEADER not in top:
        raise InvalidValue("DUIS response without a Header")
    if message is None:
        raise InvalidValue("DUIS response without a Body message")
    header = _children(top[_HEADER])
    code = check_response_code(_value(header, _CODE))
    logged_at = duis_time(_value(header, _TIME), "ResponseDateTime")
    # given empty is no id: the schema's pattern has no empty value (it was read as absent)
    request_id = RequestId.parse(_value(header, _REQUEST_ID)) if _REQUEST_ID in header else None
    response_id = RequestId.parse(_value(header, _RESPONSE_ID)) if _RESPONSE_ID in header else None
    if request_id is None and response_id is None:
        raise InvalidValue("DUIS response with neither RequestID nor ResponseID")
    parts = _Parts(logged_at, code, request_id, response_id, payload)
    if message.tag == _MESSAGE:  # by far the most common: a response or an acknowledgement
        fields = _children(message)
        _one_payload_at_most(fields)
        return parts.response_message(fields.get(_FUTURE), check_srv(_value(fields, _SRV)))
    if not _in(message, NS):  # an alert of another namespace was stored as DUIS's (audit 29c)
        raise _foreign("DUIS response Body", message.tag)
    name = _local(message)
    if name == "DeviceAlertMessage":
        return parts.alert(
            Kind.DEVICE_ALERT,
            _hex_code(_child_text(message, "AlertCode"), "AlertCode"),
            parts.alerting_device(),
        )
    if name == "DCCAlertMessage":
        dcc_code = _child_text(message, "DCCAlertCode")
        if dcc_code not in _DCC_ALERT_CODES:
            raise InvalidValue(
                "DCCAlertCode must be one of the DUIS schema's DCC Alert codes, not "
                f"{shown(dcc_code)}"
            )
        return parts.alert(Kind.DCC_ALERT, dcc_code, _named_device(_child(message, "DCCAlert")))
    if name == "SMETS1ResponseMessage":
        return parts.smets1(message)
    raise InvalidValue(f"DUIS response Body holds an unknown message: {shown(name)}")


_TITLES = {_q("ServiceReference"), _SRV}


def _one_payload_at_most(fields: dict[Any, etree._Element]) -> None:
    """A ResponseMessage holds its titles and, at most, one of the schema's choice (a
    GBCSPayload, a FutureDatedDeviceAlertMessage, ...), all of DUIS's namespace: a
    future-dated outcome beside a payload, or of another namespace, was stored as a
    response (audit 29c)."""
    rest = [tag for tag in fields if isinstance(tag, str) and tag not in _TITLES]
    if len(rest) > 1:
        names = ", ".join(shown(tag.rpartition("}")[2]) for tag in rest[:3])
        raise InvalidValue(f"ResponseMessage holds {len(rest)} of the schema's one: {names}")
    if rest and not _in(fields[rest[0]], NS):
        raise _foreign("ResponseMessage", rest[0])


def _foreign(where: str, tag: str) -> InvalidValue:
    return InvalidValue(f"{where} holds an element of no DUIS namespace: {shown(tag)}")


def _hex_code(value: str, field: str) -> str:
    if not _ALERT_CODE.match(value):
        raise InvalidValue(
            f"{field} must be a hexadecimal alert code such as 8F66, not {shown(value)}"
        )
    return value.upper()


class _Parts:
    """The header's parts of one response, and the records SPEC section 4.1 makes of them."""

    def __init__(
        self,
        logged_at: datetime,
        code: str,
        request_id: RequestId | None,
        response_id: RequestId | None,
        payload: str,
    ) -> None:
        self.logged_at, self.code, self.payload = logged_at, code, payload
        self.request_id, self.response_id = request_id, response_id

    @property
    def _addressee(self) -> str:
        """An alert goes to the ResponseID's target; a response to its request's sender."""
        if self.response_id is not None:
            return self.response_id.target
        return self.request_id.originator  # type: ignore[union-attr]

    def alerting_device(self) -> str:
        if self.response_id is None:
            raise InvalidValue(
                "DUIS device alert without a ResponseID (its originator is the Device)"
            )
        return self.response_id.originator

    def alert(
        self, kind: Kind, code: str, device_id: str, srv: str = "", request_id: str = ""
    ) -> SatRecord:
        if self.response_id is None and not request_id:
            raise InvalidValue(f"DUIS {kind.value.replace('_', ' ')} without a ResponseID")
        return SatRecord(
            self.logged_at,
            kind,
            request_id or str(self.response_id),
            srv,
            self._addressee,
            device_id,
            code,
            self.payload,
            response_id=self._response_id_text,
        )

    @property
    def _response_id_text(self) -> str:
        return str(self.response_id) if self.response_id is not None else ""

    def response_message(self, future: etree._Element | None, srv: str) -> SatRecord:
        """A ResponseMessage's record; `future` its FutureDatedDeviceAlertMessage, if any."""
        if future is not None:
            # the outcome of a future-dated command: a Device Alert (outside MP141), kept
            # beside its command by the command's SRV and Request ID
            if self.request_id is None:
                raise InvalidValue("DUIS future-dated alert without the command's RequestID")
            code = _hex_code(_child_text(future, "FutureDatedAlertCode"), "FutureDatedAlertCode")
            if code not in FUTURE_DATED_ALERT_CODES:
                raise InvalidValue(f"FutureDatedAlertCode must be 8F66 or 8F67, not {shown(code)}")
            return self.alert(
                Kind.DEVICE_ALERT, code, self.request_id.target, srv, str(self.request_id)
            )
        kind = Kind.ACKNOWLEDGEMENT if self.code == "I99" else Kind.RESPONSE
        return self._response(kind, srv)

    def _response(self, kind: Kind, srv: str) -> SatRecord:
        if kind is Kind.ACKNOWLEDGEMENT and self.request_id is None:
            # stored with an empty request_id, it acknowledged no request, where SAT JSON
            # Lines refuse the same record (SPEC 4.1's I99 row has no id to fall back on)
            raise InvalidValue(
                "DUIS acknowledgement (I99) without a RequestID: it answers a request"
            )
        if self.request_id is not None:
            user_id, device_id, request_id = (
                self.request_id.originator,
                self.request_id.target,
                str(self.request_id),
            )
        else:  # the Device answered with no RequestID: its ResponseID names the Device and the User
            answered = self.response_id
            assert answered is not None  # a header without either id was rejected when read
            user_id, device_id, request_id = answered.target, answered.originator, ""
        if is_non_device(srv):
            device_id = ""
        return SatRecord(
            self.logged_at,
            kind,
            request_id,
            srv,
            user_id,
            device_id,
            self.code,
            self.payload,
            response_id=self._response_id_text,
        )

    def smets1(self, message: etree._Element) -> SatRecord:
        """Classified by what is inside SMETS1SignedResponse/SMETS1Response/Body."""
        inner = _child(_child(message, "SMETS1SignedResponse"), "SMETS1Response")
        inner_header = _child(inner, "Header")
        inner_message = _only_message(_child(inner, "Body"))
        if inner_header is None or inner_message is None:
            raise InvalidValue(
                "SMETS1ResponseMessage without SMETS1SignedResponse/SMETS1Response Header and Body"
            )
        if not _in(inner_message, NS, RA_NS):
            raise _foreign("SMETS1Response Body", inner_message.tag)
        if _local(inner_message) == "DeviceAlertMessage":
            device = _child_text(inner_header, "BusinessOriginatorID")
            if not is_eui64(device):
                raise InvalidValue(
                    f"SMETS1 alert: BusinessOriginatorID is not an EUI-64: {shown(device)}"
                )
            code = _hex_code(
                _child_text(inner_header, "GBCSHexadecimalMessageCode"),
                "GBCSHexadecimalMessageCode",
            )
            return self.alert(Kind.DEVICE_ALERT, code, eui64(device))
        if _local(inner_message) != "ResponseMessage":
            raise InvalidValue(
                f"SMETS1Response Body holds an unknown message: {shown(_local(inner_message))}"
            )
        srv = _child_text(message, "ServiceReferenceVariant") or _child_text(
            inner_header, "ServiceReferenceVariant"
        )
        kind = Kind.ACKNOWLEDGEMENT if self.code == "I99" else Kind.RESPONSE
        return self._response(kind, check_srv(srv))
