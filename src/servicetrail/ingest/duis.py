"""DUIS XML (SPEC section 4 and shared/duis/README.md) to SAT records, refusing hostile XML.

A document with a DOCTYPE or an entity declaration is rejected outright, not defused;
the parser never loads a DTD, expands an entity or touches the network, and documents
over MAX_DOCUMENT_BYTES are refused before parsing.
"""
from __future__ import annotations

import os
import re
from datetime import datetime

from lxml import etree

from ..domain.catalogue import is_non_device
from ..domain.ids import InvalidValue, RequestId
from ..domain.model import Kind, SatRecord
from ..domain.times import parse_time

NS = "http://www.dccinterface.co.uk/ServiceUserGateway"
MAX_DOCUMENT_BYTES = int(os.environ.get("SERVICETRAIL_MAX_DUIS_BYTES", str(4 * 1024 * 1024)))
_DTD = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                          huge_tree=False, remove_comments=False)


def _q(name: str) -> str:
    return f"{{{NS}}}{name}"


_REQUEST, _RESPONSE, _HEADER, _BODY = _q("Request"), _q("Response"), _q("Header"), _q("Body")
_FUTURE_ALERT = _q("FutureDatedDeviceAlertMessage")
_CLARK: dict[str, str] = {}


def _text(parent: etree._Element, path: str) -> str:
    # a path in Clark notation ({uri}name) is found without a namespace map, which lxml
    # would otherwise turn into a fresh path for every call
    clark = _CLARK.get(path)
    if clark is None:
        clark = _CLARK[path] = "/".join(_q(step.removeprefix("sr:")) for step in path.split("/"))
    found = parent.find(clark)
    return (found.text or "").strip() if found is not None else ""


def parse_document(document: bytes, logged_at: datetime | None) -> SatRecord:
    """One DUIS message. `logged_at` is the time the SAT logged a request (responses carry their own)."""
    return _parse(document, logged_at, None)


def parse_text(document: str, logged_at: datetime | None) -> SatRecord:
    """parse_document for a document already decoded (a JSON Lines capture), without decoding it again."""
    return _parse(document.encode("utf-8"), logged_at, document)


def _parse(document: bytes, logged_at: datetime | None, text: str | None) -> SatRecord:
    if len(document) > MAX_DOCUMENT_BYTES:
        raise InvalidValue(f"DUIS document of {len(document)} bytes is over the {MAX_DOCUMENT_BYTES}-byte limit")
    if _DTD.search(document):
        raise InvalidValue("DUIS document with a DOCTYPE or entity declaration refused (XML hardening)")
    try:
        root = etree.fromstring(document, _PARSER)
    except etree.XMLSyntaxError as e:
        raise InvalidValue(f"not well-formed XML: {e.msg}") from None
    if root.getroottree().docinfo.internalDTD is not None:  # e.g. a UTF-16 document hides it from _DTD
        raise InvalidValue("DUIS document with a DOCTYPE or entity declaration refused (XML hardening)")
    payload = text if text is not None and "\x00" not in text else _as_text(document, root)
    if root.tag == _REQUEST:
        return _request(root, logged_at, payload)
    if root.tag == _RESPONSE:
        return _response(root, payload)
    raise InvalidValue(f"not a DUIS sr:Request or sr:Response: root element {root.tag}")


def _as_text(document: bytes, root: etree._Element) -> str:
    """The document as it came (signature intact); re-serialised only if it is not UTF-8."""
    if b"\x00" not in document:
        try:
            return document.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return etree.tostring(root.getroottree(), encoding="unicode")


def _request(root: etree._Element, logged_at: datetime | None, payload: str) -> SatRecord:
    request_id = RequestId.parse(_text(root, "sr:Header/sr:RequestID"))
    srv = _text(root, "sr:Header/sr:ServiceReferenceVariant")
    if not srv:
        raise InvalidValue("DUIS request without Header/ServiceReferenceVariant")
    if logged_at is None:
        raise InvalidValue("DUIS request without a logged_at time")
    device_id = "" if is_non_device(srv) else request_id.target
    return SatRecord(logged_at, Kind.REQUEST, str(request_id), srv, request_id.originator, device_id, "", payload)


def _response(root: etree._Element, payload: str) -> SatRecord:
    header = root.find(_HEADER)
    body = root.find(_BODY)
    # comments and processing instructions are not messages
    message = next((child for child in body if isinstance(child.tag, str)), None) if body is not None else None
    if header is None or message is None:
        raise InvalidValue("DUIS response without Header and Body")
    code = _text(header, "sr:ResponseCode")
    if not code:
        raise InvalidValue("DUIS response without Header/ResponseCode")
    try:
        logged_at = parse_time(_text(header, "sr:ResponseDateTime"))
    except InvalidValue as e:
        raise InvalidValue(f"ResponseDateTime: {e}") from None
    raw_request_id = _text(header, "sr:RequestID")
    raw_response_id = _text(header, "sr:ResponseID")
    request_id = RequestId.parse(raw_request_id) if raw_request_id else None
    response_id = RequestId.parse(raw_response_id) if raw_response_id else None
    if request_id is None and response_id is None:
        raise InvalidValue("DUIS response with neither RequestID nor ResponseID")
    kind = _kind(message, code)
    srv = "" if kind in (Kind.DEVICE_ALERT, Kind.DCC_ALERT) else _text(message, "sr:ServiceReferenceVariant")
    if request_id is not None:  # a response to a request goes back to the request's sender
        user_id = request_id.originator
        device_id = "" if is_non_device(srv) else request_id.target
        if kind == Kind.DCC_ALERT:
            device_id = ""
        elif kind == Kind.DEVICE_ALERT and response_id is not None:
            device_id = response_id.originator
    else:  # an alert: from the Device (or the DCC) to a User
        user_id = response_id.target
        device_id = response_id.originator if kind == Kind.DEVICE_ALERT else ""
    identity = str(request_id or response_id)
    return SatRecord(logged_at, kind, identity, srv, user_id, device_id, code, payload)


def _kind(message: etree._Element, code: str) -> Kind:
    name = message.tag.rpartition("}")[2]  # the local name, whatever the namespace
    if name == "DeviceAlertMessage" or message.find(_FUTURE_ALERT) is not None:
        return Kind.DEVICE_ALERT
    if name == "DCCAlertMessage":
        return Kind.DCC_ALERT
    if code == "I99":
        return Kind.ACKNOWLEDGEMENT
    return Kind.RESPONSE
