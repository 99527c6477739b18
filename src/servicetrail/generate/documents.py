"""DUIS XML: the pieces of requests, responses and alerts, made once per stream from their own
seeded random source, so that a message is a join of a few strings."""
from __future__ import annotations

import base64
import random
import re

from ..domain.catalogue import CATALOGUE, Srv

NS = "http://www.dccinterface.co.uk/ServiceUserGateway"


def _camel(title: str) -> str:
    words = re.sub(r"[^A-Za-z0-9 ]", " ", title).split()
    return "".join(w if w[:1].isupper() else w.capitalize() for w in words)


def _service_reference(srv: str) -> str:
    parts = srv.split(".")
    return ".".join(parts[:2]) if len(parts) == 3 else srv


def _b64(rng: random.Random, lo: int, hi: int) -> str:
    return base64.b64encode(rng.randbytes(rng.randint(lo, hi))).decode("ascii")


_FIELDS = ("ExecutionDateTime", "StandingCharge", "PriceScale", "TariffThreshold", "BlockPrice",
           "SwitchingTable", "SpecialDays", "ThresholdValue", "TimePeriod", "DebtRecoveryRate",
           "EmergencyCreditLimit", "DisablementThreshold", "MaxMeterBalance", "CalorificValue")


class _Documents:
    """DUIS XML pieces, built once per stream; a message is a join of a few strings."""

    def __init__(self, rng: random.Random) -> None:
        self.signatures = [self._signature(rng) for _ in range(48)]
        self.device_payloads = [_b64(rng, 24, 640) for _ in range(96)]
        self.smets1_payloads = [_b64(rng, 60, 600) for _ in range(48)]
        self.alert_payloads = [_b64(rng, 30, 120) for _ in range(32)]
        self.request_head = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<sr:Request xmlns:sr="' + NS + '" '
            'xmlns:ds="http://www.w3.org/2000/09/xmldsig#" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" schemaVersion="5.1"><sr:Header><sr:RequestID>')
        self.response_head = (
            '<?xml version="1.0" encoding="UTF-8" standalone="no"?><sr:Response xmlns:sr="' + NS + '" '
            'xmlns:ds="http://www.w3.org/2000/09/xmldsig#" '
            'xmlns:ra="http://www.dccinterface.co.uk/ResponseAndAlert" schemaVersion="5.1"><sr:Header>')
        self.request_header: dict[str, str] = {}
        self.request_bodies: dict[str, list[tuple[str, str]]] = {}
        self.reference: dict[str, str] = {}
        for s in CATALOGUE.values():
            variant = "8" if s.non_device else ("3" if s.critical else "1")
            ref = _service_reference(s.srv)
            self.reference[s.srv] = (f"<sr:ServiceReference>{ref}</sr:ServiceReference>"
                                     f"<sr:ServiceReferenceVariant>{s.srv}</sr:ServiceReferenceVariant>")
            self.request_header[s.srv] = (
                f"</sr:RequestID><sr:CommandVariant>{variant}</sr:CommandVariant>"
                f"{self.reference[s.srv]}</sr:Header><sr:Body>")
            self.request_bodies[s.srv] = [self._body(rng, s) for _ in range(4)]

    @staticmethod
    def _signature(rng: random.Random) -> str:
        digest = base64.b64encode(rng.randbytes(32)).decode()
        value = base64.b64encode(rng.randbytes(64)).decode()
        return (
            '<ds:Signature><ds:SignedInfo><ds:CanonicalizationMethod '
            'Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod '
            'Algorithm="http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"/><ds:Reference URI="">'
            '<ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>'
            '</ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>'
            f'<ds:DigestValue>{digest}</ds:DigestValue></ds:Reference></ds:SignedInfo>'
            f'<ds:SignatureValue>{value}</ds:SignatureValue><ds:KeyInfo><ds:X509Data><ds:X509IssuerSerial>'
            f'<ds:X509IssuerName>CN=U1, OU=07</ds:X509IssuerName><ds:X509SerialNumber>'
            f'{rng.getrandbits(120)}</ds:X509SerialNumber></ds:X509IssuerSerial></ds:X509Data></ds:KeyInfo>'
            '</ds:Signature>')

    @staticmethod
    def _body(rng: random.Random, s: Srv) -> tuple[str, str]:
        """(before, after) the day of the request, which goes between them."""
        element = _camel(s.title)
        if s.srv == "12.2":
            device = "-".join(f"{rng.getrandbits(8):02X}" for _ in range(8))
            return (f"<sr:DevicePrenotification><sr:DeviceID>{device}</sr:DeviceID><sr:DeviceManufacturer>AB01"
                    "</sr:DeviceManufacturer><sr:DeviceModel>010A030B</sr:DeviceModel><sr:DeviceType>ESME"
                    "</sr:DeviceType><sr:SMETSCHTSVersion>SMETS V5.0</sr:SMETSCHTSVersion><sr:FirmwareVersion>"
                    "0002012F</sr:FirmwareVersion><sr:ESMEVariant>A</sr:ESMEVariant><sr:InstallDate>",
                    "</sr:InstallDate></sr:DevicePrenotification>")
        if s.title.startswith(("Read", "Retrieve")) and ("Log" in s.title or "Profile" in s.title):
            return (f"<sr:{element}><sr:ReadLogPeriod><sr:StartDateTime>",
                    f"T00:00:00Z</sr:StartDateTime><sr:EndDateTime>2099-12-31T23:59:59Z</sr:EndDateTime>"
                    f"</sr:ReadLogPeriod></sr:{element}>")
        if s.title.startswith(("Read", "Retrieve")):
            return f"<sr:{element}><sr:ExecutionDateTime>", f"T00:00:00Z</sr:ExecutionDateTime></sr:{element}>"
        children = "".join(
            f"<sr:{name}>{rng.randint(0, 99_999_999)}</sr:{name}>"
            for name in rng.sample(_FIELDS[1:], rng.randint(1, 6 if not s.critical else 12)))
        if s.critical:
            children += f"<sr:PreCommand><sr:GBCSPayload>{_b64(rng, 60, 240)}</sr:GBCSPayload></sr:PreCommand>"
        return (f"<sr:{element}><sr:ExecutionDateTime>",
                f"T02:00:00Z</sr:ExecutionDateTime>{children}</sr:{element}>")
