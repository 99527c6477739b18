"""Regenerate src/servicetrail/generate/duis_bodies.py: one schema-valid DUIS request body per SRV.

    pip install xmlschema   # only this script needs it
    python scripts/gen_duis_bodies.py "../shared/duis/schema/DUIS Schema V5.4.xsd"

Each body is the smallest instance of its element in the XSD: required elements and
attributes only, the first alternative of a choice (a gas body prefers the Gas ones), and
for every simple value the first of a few plausible candidates that its type accepts.
Two places are left open for the generator: the optional ExecutionDateTime of a
future-datable request, and the first Device ID a non-device request names. Every body is
validated, inside a whole request, before the module is written.
"""
from __future__ import annotations

import base64
import re
import sys
from pathlib import Path
from urllib.parse import quote

import xmlschema
from lxml import etree
from xmlschema.validators import XsdAnyElement, XsdElement, XsdGroup

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from servicetrail.domain.catalogue import CATALOGUE  # noqa: E402

OUT = ROOT / "src/servicetrail/generate/duis_bodies.py"
PREFIX = {"http://www.dccinterface.co.uk/ServiceUserGateway": "sr",
          "http://www.dccinterface.co.uk/ResponseAndAlert": "ra",
          "http://www.w3.org/2000/09/xmldsig#": "ds"}
# where the body element is not the SRV's title in CamelCase
ELEMENT = {
    "4.4.2": "RetrieveCoMOrTariffTriggeredBillingDataLog", "4.4.4": "RetrieveBillingDataLogDebtPayments",
    "6.14.1": "UpdateDeviceConfigurationALCDescriptions", "6.14.2": "UpdateDeviceConfigurationALCScheduler",
    "7.7": "ReadALCSData", "8.1.1": "CommissionDeviceSynchroniseClock", "8.12.2": "RestoreGPFDeviceLog",
    "8.14.1": "CHFInstallSuccessSMWAN", "8.14.2": "CHFInstallSuccessNoSMWAN", "8.14.3": "CHFFaultReturn",
    "8.14.4": "CHFNoFaultReturn", "12.2": "DevicePrenotification",
}
EUI = "00-DB-12-00-00-00-0A-01"  # a Device the body names that is not the subject
EXECUTION, DEVICE, DAY = 0, 1, 2  # the open places, as the generated module numbers them
SOME_DAY = "2025-01-01"  # a date value is the request's day: the generator puts it in
_EUI_PATTERN = re.compile(r"\[A-Fa-f0-9\]\{2\}-")


def _camel(title: str) -> str:
    words = re.sub(r"[^A-Za-z0-9 ]", " ", title).split()
    return "".join(w if w[:1].isupper() else w.capitalize() for w in words)


def _qname(component) -> str:
    return f"{PREFIX[component.target_namespace]}:{component.local_name}"


def _candidates(xsd_type, occurrence: int) -> list[str]:
    """Plausible values of a simple type, most plausible first; the type picks the first it accepts."""
    if getattr(xsd_type, "enumeration", None):
        return [str(v) for v in xsd_type.enumeration]
    if xsd_type.is_list():
        return _candidates(xsd_type.item_type, occurrence)
    if xsd_type.is_union():
        return [v for member in xsd_type.member_types for v in _candidates(member, occurrence)]
    primitive = xsd_type.primitive_type.local_name
    lo, hi = getattr(xsd_type, "min_length", None) or 0, getattr(xsd_type, "max_length", None)
    if primitive in ("decimal", "double", "float"):
        low, high = xsd_type.min_value, xsd_type.max_value
        middle = (low + high) / 2 if low is not None and high is not None else None
        numbers = [occurrence, 0, 1, 100, -1, low, high, middle]
        return [str(n) for n in numbers if n is not None]
    if primitive == "boolean":
        return ["true"]
    if primitive == "dateTime":
        return [SOME_DAY + "T00:00:00Z"]
    if primitive == "date":
        return [SOME_DAY, SOME_DAY + "Z"]
    if primitive == "time":
        return [f"{occurrence - 1:02d}:00:00Z", "00:00:00Z"]
    if primitive == "hexBinary":
        return ["8F" + "00" * max(lo - 1, 0), "00" * max(lo, 1)]
    if primitive == "base64Binary":
        size = max(lo, 1) if hi is None else max(min(max(lo, 16), hi), 1)
        return [base64.b64encode(bytes(range(size))).decode()]
    if primitive in ("gYear", "gMonth", "gDay", "gMonthDay"):
        return {"gYear": ["2025"], "gMonth": ["--01"], "gDay": ["---01"], "gMonthDay": ["--01-01"]}[primitive]
    # strings: Device IDs where the pattern asks for them, else short text padded to the minimum length
    patterns = getattr(xsd_type, "patterns", None)
    if patterns is not None and any(_EUI_PATTERN.search(p) for p in patterns.regexps):
        return [EUI]
    texts = [str(occurrence), "A", "1" * max(lo, 1), "0" * max(lo, 1), "A" * max(lo, 1), " ".join(["1"] * max(lo, 1))]
    return [t for t in texts if hi is None or len(t) <= hi]


def _value(xsd_type, where: str, occurrence: int) -> str:
    for candidate in _candidates(xsd_type, occurrence):
        if xsd_type.is_valid(candidate):
            return candidate
    raise SystemExit(f"no value found for {where} ({xsd_type})")


class _Body:
    """Builds one instance as a list of text and open places (EXECUTION, DEVICE)."""

    def __init__(self, fuel: str, subject_device: bool) -> None:
        self.fuel = fuel
        self.subject_device = subject_device  # the first Device ID named is the open DEVICE place
        self.parts: list[str | int] = []
        self.dated = False  # the ExecutionDateTime is required, not optional

    def element(self, el: XsdElement, occurrence: int = 1) -> None:
        name = _qname(el)
        xsd_type = el.type
        if el.local_name == "ExecutionDateTime":
            self.parts.append(EXECUTION)
            self.dated = self.dated or el.min_occurs > 0
            return
        attrs = ""
        for attr in getattr(xsd_type, "attributes", {}).values():
            if getattr(attr, "use", None) == "required":
                value = str(occurrence) if attr.local_name == "index" else _value(attr.type, attr.name, occurrence)
                attrs += f' {attr.local_name}="{value}"'
        if xsd_type.is_simple() or xsd_type.has_simple_content():
            simple = xsd_type if xsd_type.is_simple() else xsd_type.content
            value = _value(simple, el.name, occurrence)
            if value == EUI and self.subject_device:
                self.subject_device = False
                self.parts += [f"<{name}{attrs}>", DEVICE, f"</{name}>"]
            elif value.startswith(SOME_DAY):
                if "End" in el.local_name and simple.is_valid(SOME_DAY + "T23:59:59Z"):
                    value = SOME_DAY + "T23:59:59Z"
                self.parts += [f"<{name}{attrs}>", DAY, f"{value[len(SOME_DAY):]}</{name}>"]
            else:
                self.parts.append(f"<{name}{attrs}>{value}</{name}>")
            return
        if xsd_type.is_empty():
            self.parts.append(f"<{name}{attrs}/>")
            return
        self.parts.append(f"<{name}{attrs}>")
        self.group(xsd_type.content)
        self.parts.append(f"</{name}>")

    def group(self, group: XsdGroup) -> None:
        particles = list(group)
        if group.model == "choice":
            particles = [self._choose(particles)]
        for particle in particles:
            self.particle(particle)

    def particle(self, particle) -> None:
        if isinstance(particle, XsdGroup):
            for _ in range(particle.min_occurs):
                self.group(particle)
        elif isinstance(particle, XsdAnyElement):
            if particle.min_occurs:
                raise SystemExit(f"a required xs:any in {particle.parent}")
        elif particle.min_occurs or particle.local_name == "ExecutionDateTime":
            for occurrence in range(1, max(particle.min_occurs, 1) + 1):
                self.element(particle, occurrence)

    def _choose(self, particles: list):
        other = "Gas" if self.fuel == "Elec" else "Elec"

        def names(p) -> list[str]:
            return [p.local_name] if isinstance(p, XsdElement) else [e.local_name for e in p.iter_elements()]

        for p in particles:
            if any(n.startswith(self.fuel) for n in names(p)):
                return p
        return next((p for p in particles if not any(n.startswith(other) for n in names(p))), particles[0])


def _schema_for_lxml(path: Path) -> etree.XMLSchema:
    # libxml2 drops an xs:import whose schemaLocation holds spaces ("MMC Schema V5.4.xsd")
    doc = etree.parse(str(path))
    for imp in doc.getroot().iter("{http://www.w3.org/2001/XMLSchema}import"):
        imp.set("schemaLocation", quote(imp.get("schemaLocation")))
    return etree.XMLSchema(doc)


def _request(srv: str, variant: int, parts: list[str | int], dated: bool) -> str:
    places = {EXECUTION: "<sr:ExecutionDateTime>2030-01-15T09:00:00Z</sr:ExecutionDateTime>" if dated else "",
              DEVICE: "90-B3-D5-1F-30-00-00-09", DAY: "2031-02-28"}
    body = "".join(places[p] if isinstance(p, int) else p for p in parts)
    ref = ".".join(srv.split(".")[:2])
    return ('<sr:Request xmlns:sr="http://www.dccinterface.co.uk/ServiceUserGateway" schemaVersion="5.4">'
            "<sr:Header><sr:RequestID>90-B3-D5-1F-30-01-00-00:00-DB-12-00-00-00-00-01:1</sr:RequestID>"
            f"<sr:CommandVariant>{variant}</sr:CommandVariant><sr:ServiceReference>{ref}</sr:ServiceReference>"
            f"<sr:ServiceReferenceVariant>{srv}</sr:ServiceReferenceVariant></sr:Header>"
            f"<sr:Body>{body}</sr:Body></sr:Request>")


def main(xsd: str) -> None:
    schema = xmlschema.XMLSchema(xsd)
    checker = _schema_for_lxml(Path(xsd))
    request_body = next(p for p in schema.elements["Request"].type.content if p.local_name == "Body")
    elements = {p.local_name: p for p in request_body.type.content}
    rows, dated = [], []
    for s in CATALOGUE.values():
        element = elements[ELEMENT.get(s.srv, _camel(s.title))]
        variants = []
        for fuel in ("Elec", "Gas"):
            body = _Body(fuel, subject_device=s.non_device)
            body.element(element)
            for variant, with_date in ((1, True), (4, True), (8, True), (1, body.dated)):
                document = _request(s.srv, variant, body.parts, with_date)
                if not checker.validate(etree.fromstring(document)):
                    raise SystemExit(f"{s.srv}: {checker.error_log.last_error}\n{document}")
            if body.parts not in variants:
                variants.append(body.parts)
            if body.dated and s.srv not in dated:
                dated.append(s.srv)
        rows.append((s.srv, variants))
    lines = [
        '"""One schema-valid DUIS request body per SRV (a second where a gas Device needs its own).',
        "",
        "Generated by scripts/gen_duis_bodies.py from DUIS Schema V5.4.xsd; do not edit. A body is a",
        "tuple of text and three open places: EXECUTION, where the ExecutionDateTime element goes (a",
        "future-datable request; optional except in the SRVs of ALWAYS_DATED), DEVICE, the first Device",
        "a non-device request names, and DAY, the request's day (YYYY-MM-DD) in every date the body holds.",
        '"""',
        "",
        f"EXECUTION, DEVICE, DAY = {EXECUTION}, {DEVICE}, {DAY}",
        f"ALWAYS_DATED = frozenset({sorted(dated)!r})",
        "",
        "Body = tuple[str | int, ...]",
        "# srv -> (the electricity body, then a gas body where it differs)",
        "BODIES: dict[str, tuple[Body, ...]] = {",
    ]
    for srv, variants in rows:
        lines.append(f"    {srv!r}: (")
        for parts in variants:
            merged: list[str | int] = []
            for p in parts:  # adjacent text joined: fewer pieces to put together per message
                if isinstance(p, str) and merged and isinstance(merged[-1], str):
                    merged[-1] += p
                else:
                    merged.append(p)
            names = {EXECUTION: "EXECUTION", DEVICE: "DEVICE", DAY: "DAY"}
            lines.append("        (" + ", ".join(names[p] if isinstance(p, int) else repr(p) for p in merged) + ",),")
        lines.append("    ),")
    lines.append("}")
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(rows)} SRVs to {OUT}")


if __name__ == "__main__":
    main(sys.argv[1])
