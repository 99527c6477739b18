"""DUIS XML as the DCC exchanges it (DUIS Schema V5.4): requests in every Command Variant the
generator sends, acknowledgements, responses (SMETS2, SMETS1, DCC-scheduled, pre-commands,
future-dated outcomes) and alerts. Pieces are made once per stream from its own seeded random
source, so that a message is a join of a few strings."""

from __future__ import annotations

import base64
import random
import re
from collections.abc import Callable

from ..domain.catalogue import CATALOGUE
from .duis_bodies import BODIES, DAY, DEVICE, EXECUTION, Body

NS = "http://www.dccinterface.co.uk/ServiceUserGateway"
CANCEL = "3000-12-31T00:00:00Z"  # the ExecutionDateTime that cancels a pending future-dated command
_GAS_TYPES = frozenset({"GSME", "GPF"})
_ELEMENT = re.compile(r"<sr:(\w+)")


def _service_reference(srv: str) -> str:
    parts = srv.split(".")
    return ".".join(parts[:2]) if len(parts) == 3 else srv


def _b64(rng: random.Random, lo: int, hi: int) -> str:
    return base64.b64encode(rng.randbytes(rng.randint(lo, hi))).decode("ascii")


def _signature(rng: random.Random) -> str:
    digest = base64.b64encode(rng.randbytes(32)).decode()
    value = base64.b64encode(rng.randbytes(64)).decode()
    return (
        '<ds:Signature><ds:SignedInfo><ds:CanonicalizationMethod '
        'Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod '
        'Algorithm="http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"/><ds:Reference URI="">'
        '<ds:Transforms><ds:Transform '
        'Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>'
        '</ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>'
        f'<ds:DigestValue>{digest}</ds:DigestValue></ds:Reference></ds:SignedInfo>'
        f'<ds:SignatureValue>{value}</ds:SignatureValue><ds:KeyInfo><ds:X509Data><ds:X509IssuerSerial>'
        f'<ds:X509IssuerName>CN=U1, OU=07</ds:X509IssuerName><ds:X509SerialNumber>'
        f'{rng.getrandbits(120)}</ds:X509SerialNumber></ds:X509IssuerSerial></ds:X509Data></ds:KeyInfo>'
        '</ds:Signature>'
    )


# the DCC alerts the generator sends, by code: AD1 names a comms hub (CommsHubDeviceID), N12, N16
# and N56 a Device (DeviceID); N24, a change of supplier's outcome, names only the request
DCC_ALERTS = {
    "AD1": (
        "<sr:PowerOutageEvent><sr:CommsHubDeviceID>{device}</sr:CommsHubDeviceID><sr:StartDateTime>{since}"
        "</sr:StartDateTime><sr:MPxN>{mpxn}</sr:MPxN></sr:PowerOutageEvent>"
    ),
    "N12": (
        "<sr:CommandFailure><sr:CommandRequestID>{request_id}</sr:CommandRequestID><sr:DeviceID>{device}"
        "</sr:DeviceID></sr:CommandFailure>"
    ),
    "N16": (
        "<sr:DeviceStatusChangeEvent><sr:DeviceID>{device}</sr:DeviceID><sr:DeviceStatusChange>"
        "<sr:DeviceSuspended/></sr:DeviceStatusChange></sr:DeviceStatusChangeEvent>"
    ),
    "N24": (
        "<sr:ChangeOfSupplier><sr:ChangeOfSupplierServiceRequestID>{request_id}"
        "</sr:ChangeOfSupplierServiceRequestID></sr:ChangeOfSupplier>"
    ),
    "N56": (
        "<sr:DSPScheduleRemoval><sr:DeviceID>{device}</sr:DeviceID><sr:DSPScheduleID>{schedule_id}"
        "</sr:DSPScheduleID></sr:DSPScheduleRemoval>"
    ),
}

_REQUEST_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<sr:Request xmlns:sr="' + NS + '" '
    'xmlns:ds="http://www.w3.org/2000/09/xmldsig#" schemaVersion="5.4"><sr:Header><sr:RequestID>'
)
_RESPONSE_HEAD = (
    '<?xml version="1.0" encoding="UTF-8" standalone="no"?><sr:Response xmlns:sr="' + NS + '" '
    'xmlns:ds="http://www.w3.org/2000/09/xmldsig#" '
    'xmlns:ra="http://www.dccinterface.co.uk/ResponseAndAlert" schemaVersion="5.4"><sr:Header>'
)


class _Documents:
    """DUIS XML pieces, built once per stream; `rand` is the stream's, so one seed decides all."""

    def __init__(self, rng: random.Random, rand: Callable[[], float]) -> None:
        self.rand = rand
        self.signatures = [_signature(rng) for _ in range(48)]
        self.device_payloads = [_b64(rng, 24, 640) for _ in range(96)]
        self.smets1_payloads = [_b64(rng, 60, 600) for _ in range(48)]
        self.alert_payloads = [_b64(rng, 30, 120) for _ in range(32)]
        self.command_payloads = [_b64(rng, 60, 240) for _ in range(48)]
        self.reference: dict[str, str] = {}
        self.header_tail: dict[
            tuple[str, int], str
        ] = {}  # (srv, command variant) -> the header after RequestID
        self.bodies: dict[
            tuple[str, bool], Body
        ] = {}  # (srv, gas) -> the body with its open places
        self.s1_element: dict[str, str] = {}  # srv -> the name an S1 response's data goes by
        for s in CATALOGUE.values():
            ref = _service_reference(s.srv)
            self.reference[s.srv] = (
                f"<sr:ServiceReference>{ref}</sr:ServiceReference>"
                f"<sr:ServiceReferenceVariant>{s.srv}</sr:ServiceReferenceVariant>"
            )
            for variant in (1, 4, 5, 8):
                self.header_tail[(s.srv, variant)] = (
                    f"</sr:RequestID><sr:CommandVariant>{variant}</sr:CommandVariant>{self.reference[s.srv]}"
                    "</sr:Header><sr:Body>"
                )
            electricity, *gas = BODIES[s.srv]
            self.bodies[(s.srv, False)] = electricity
            self.bodies[(s.srv, True)] = gas[0] if gas else electricity
            opening = _ELEMENT.match(str(electricity[0]))
            assert opening is not None, f"{s.srv}: a body opens with its element"
            self.s1_element[s.srv] = opening.group(1) + "Rsp"

    def _pick(self, pool: list[str]) -> str:
        return pool[int(self.rand() * len(pool))]

    # ------------------------------------------------------------ requests

    def body(self, srv: str, device_type: str, day: str, execution: str, device: str) -> str:
        """The SRV's body: `execution` an ExecutionDateTime value or "", `device` what a non-device
        SRV names."""
        places = {
            EXECUTION: f"<sr:ExecutionDateTime>{execution}</sr:ExecutionDateTime>"
            if execution
            else "",
            DEVICE: device,
            DAY: day,
        }
        return "".join(
            places[p] if isinstance(p, int) else p
            for p in self.bodies[(srv, device_type in _GAS_TYPES)]
        )

    def signed_pre_command(self, execution: str) -> str:
        """The body of a Command Variant 5 request: the pre-command the DCC returned, signed by the
        User."""
        dated = f"<sr:ExecutionDateTime>{execution}</sr:ExecutionDateTime>" if execution else ""
        return "".join(
            (
                "<sr:SignedPreCommand>",
                dated,
                "<sr:GBCSPayload>",
                self._pick(self.command_payloads),
                "</sr:GBCSPayload></sr:SignedPreCommand>",
            )
        )

    def request(self, rid: str, variant: int, srv: str, body: str) -> str:
        return "".join(
            (
                _REQUEST_HEAD,
                rid,
                self.header_tail[(srv, variant)],
                body,
                "</sr:Body>",
                self._pick(self.signatures),
                "</sr:Request>",
            )
        )

    # ------------------------------------------------------------ responses

    def response(
        self, rid: str, response_id: str, code: str, at: str, message: str, signed: bool = True
    ) -> str:
        """A Response: `rid` or `response_id` may be "" (DUIS leaves the element out)."""
        return "".join(
            (
                _RESPONSE_HEAD,
                f"<sr:RequestID>{rid}</sr:RequestID>" if rid else "",
                f"<sr:ResponseID>{response_id}</sr:ResponseID>" if response_id else "",
                "<sr:ResponseCode>",
                code,
                "</sr:ResponseCode><sr:ResponseDateTime>",
                at,
                "</sr:ResponseDateTime></sr:Header><sr:Body>",
                message,
                "</sr:Body>",
                self._pick(self.signatures) if signed else "",
                "</sr:Response>",
            )
        )

    def titles_only(self, srv: str) -> str:
        """The message of an acknowledgement, an error or a DCC answer that returns no data."""
        return "".join(("<sr:ResponseMessage>", self.reference[srv], "</sr:ResponseMessage>"))

    def device_data(self, srv: str) -> str:
        return "".join(
            (
                "<sr:ResponseMessage>",
                self.reference[srv],
                "<sr:GBCSPayload>",
                self._pick(self.device_payloads),
                "</sr:GBCSPayload></sr:ResponseMessage>",
            )
        )

    def pre_command(self, srv: str) -> str:
        """The DCC's answer to a Command Variant 4 request: the command for the User to sign."""
        return "".join(
            (
                "<sr:ResponseMessage>",
                self.reference[srv],
                "<sr:PreCommand><sr:GBCSVersion>4.3</sr:GBCSVersion><sr:GBCSPayload>",
                self._pick(self.command_payloads),
                "</sr:GBCSPayload></sr:PreCommand></sr:ResponseMessage>",
            )
        )

    def scheduled_data(self, srv: str, schedule_id: int) -> str:
        """A DCC-scheduled (5.1) read's data: it answers no request of the moment, so has no
        RequestID."""
        return "".join(
            (
                "<sr:ResponseMessage>",
                self.reference[srv],
                "<sr:DSPScheduledMessage><sr:GBCSPayload>",
                self._pick(self.device_payloads),
                "</sr:GBCSPayload><sr:DSPScheduleID>",
                str(schedule_id),
                "</sr:DSPScheduleID></sr:DSPScheduledMessage></sr:ResponseMessage>",
            )
        )

    def future_dated_outcome(self, srv: str, code: str) -> str:
        """8F66 (executed) or 8F67 (failed): what the Device says when a future-dated command falls
        due."""
        return "".join(
            (
                "<sr:ResponseMessage>",
                self.reference[srv],
                "<sr:FutureDatedDeviceAlertMessage><sr:FutureDatedAlertCode>",
                code,
                "</sr:FutureDatedAlertCode><sr:GBCSPayload>",
                self._pick(self.alert_payloads),
                "</sr:GBCSPayload><sr:InstructionNumber>1"
                "</sr:InstructionNumber><sr:TotalCommandInstructions>1</sr:TotalCommandInstructions>"
                "</sr:FutureDatedDeviceAlertMessage></sr:ResponseMessage>",
            )
        )

    def _smets1(
        self,
        outer: str,
        device: str,
        user: str,
        counter: str,
        at: str,
        inner_header: str,
        inner_body: str,
    ) -> str:
        """A SMETS1 Device's message: the S1SP's signed response, inside the DCC's
        SMETS1ResponseMessage."""
        return "".join(
            (
                "<sr:SMETS1ResponseMessage>",
                outer,
                '<sr:SMETS1SignedResponse schemaVersion="5.4"><sr:SMETS1Response>'
                "<sr:Header><ra:BusinessOriginatorID>",
                device,
                "</ra:BusinessOriginatorID><ra:BusinessTargetID>",
                user,
                "</ra:BusinessTargetID><ra:OriginatorCounter>",
                counter,
                "</ra:OriginatorCounter>",
                inner_header,
                "<ra:Timestamp>",
                at,
                "</ra:Timestamp></sr:Header><sr:Body>",
                inner_body,
                "</sr:Body></sr:SMETS1Response>",
                self._pick(self.signatures),
                "</sr:SMETS1SignedResponse></sr:SMETS1ResponseMessage>",
            )
        )

    def smets1_data(
        self,
        srv: str,
        device: str,
        user: str,
        counter: str,
        at: str,
        schedule_id: int | None = None,
    ) -> str:
        reference = self.reference[srv]
        scheduled = (
            f"<sr:DSPScheduleID>{schedule_id}</sr:DSPScheduleID>" if schedule_id is not None else ""
        )
        return self._smets1(
            reference + scheduled,
            device,
            user,
            counter,
            at,
            reference.replace("sr:", "ra:"),
            "".join(
                (
                    '<sr:ResponseMessage><ra:GBCSData format="plain" sequence="0" name="',
                    self.s1_element[srv],
                    '" type="gbcs">',
                    self._pick(self.smets1_payloads),
                    "</ra:GBCSData></sr:ResponseMessage>",
                )
            ),
        )

    # ------------------------------------------------------------ alerts

    def device_alert(self, code: str) -> str:
        return "".join(
            (
                "<sr:DeviceAlertMessage><sr:AlertCode>",
                code,
                "</sr:AlertCode><sr:GBCSPayload>",
                self._pick(self.alert_payloads),
                "</sr:GBCSPayload></sr:DeviceAlertMessage>",
            )
        )

    def smets1_device_alert(self, device: str, user: str, counter: str, at: str, code: str) -> str:
        """A SMETS1 alert: its code is the inner header's GBCSHexadecimalMessageCode."""
        return self._smets1(
            "",
            device,
            user,
            counter,
            at,
            f"<ra:GBCSHexadecimalMessageCode>{code}</ra:GBCSHexadecimalMessageCode>",
            "".join(
                (
                    '<sr:DeviceAlertMessage><ra:GBCSData format="plain" sequence="0" '
                    'name="DeviceAlert" type="gbcs">',
                    self._pick(self.alert_payloads),
                    "</ra:GBCSData></sr:DeviceAlertMessage>",
                )
            ),
        )

    @staticmethod
    def dcc_alert(code: str, device: str, request_id: str, since: str, schedule_id: int) -> str:
        """A DCC alert of one of DCC_ALERTS' codes, about `device` (not named by N24) and
        `request_id`."""
        alert = DCC_ALERTS[code].format(
            device=device,
            request_id=request_id,
            since=since,
            schedule_id=schedule_id,
            mpxn=f"{int(device.replace('-', '') or '0', 16) % 10**13:013d}",
        )
        return "".join(
            (
                "<sr:DCCAlertMessage><sr:DCCAlertCode>",
                code,
                "</sr:DCCAlertCode><sr:DCCAlert>",
                alert,
                "</sr:DCCAlert></sr:DCCAlertMessage>",
            )
        )
