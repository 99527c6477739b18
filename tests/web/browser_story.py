"""The browser modules' story, built with the command line from files written here (users,
devices, responsibilities, a SAT JSON Lines capture), and what they do in a page: sign in,
search, find a row, take a screenshot. Its fixtures (the served store, Chromium, a page)
are in tests/web/conftest.py."""

from __future__ import annotations

import json
import re
import socket
import sys
from pathlib import Path

from click.testing import CliRunner

from servicetrail.cli import main
from servicetrail.domain.search import Search
from servicetrail.store.engine import open_store
from servicetrail.store.queries import iter_search, viewer_for
from tests.conftest import sqlite_store_from


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
SERVICETRAIL = Path(sys.executable).with_name("servicetrail")

BRIGHT_IS = "90-B3-D5-1F-40-01-00-01"
LOOKAT_OU = "90-B3-D5-1F-40-02-00-01"
CURRENTLY_IS = "90-B3-D5-1F-40-03-00-01"
WIRED_ED = "90-B3-D5-1F-40-04-00-01"
ESME = "00-DB-12-34-56-78-A0-01"
GSME = "00-DB-12-34-56-78-A0-02"
ESME2 = "00-DB-12-34-56-78-A0-03"  # BRIGHT's: a future-dated critical command, in DUIS
DCC = "90-B3-D5-1F-30-00-00-02"
PASSWORD = "a long test password 42"

LOOKAT_SECRET = "LOOKAT-PRIVATE-FIRMWARE-QUERY"
LOOKAT_SECRET_RESPONSE = "LOOKAT-PRIVATE-FIRMWARE-ANSWER"
BRIGHT_REGISTER = "TotalActiveImportRegister"


def rid(user: str, device: str, counter: int) -> str:
    return f"{user}:{device}:{counter}"


def duis_response(request_id: str, code: str, at: str, body: str) -> str:
    return (
        '<sr:Response xmlns:sr="http://www.dccinterface.co.uk/ServiceUserGateway" '
        'schemaVersion="5.1">'
        f"<sr:Header><sr:RequestID>{request_id}</sr:RequestID><sr:ResponseCode>{code}</sr:ResponseCode>"
        f"<sr:ResponseDateTime>{at}</sr:ResponseDateTime></sr:Header><sr:Body>{body}</sr:Body></sr:Response>"
    )


def sat_lines() -> list[dict[str, str]]:
    b1, b2 = rid(BRIGHT_IS, ESME, 1001), rid(BRIGHT_IS, ESME, 1002)
    l1, l2 = rid(LOOKAT_OU, ESME, 7), rid(LOOKAT_OU, ESME, 8)
    c1 = rid(CURRENTLY_IS, ESME, 55)
    w1 = rid(WIRED_ED, ESME, 3)
    g1 = rid(BRIGHT_IS, GSME, 2001)

    def rec(at, kind, request_id, srv, user, device, code="", payload=""):
        return {
            "logged_at": at,
            "kind": kind,
            "request_id": request_id,
            "srv": srv,
            "user_id": user,
            "device_id": device,
            "response_code": code,
            "payload": payload,
        }

    return [
        # the previous supplier, before BRIGHT's period: BRIGHT must never see it
        rec(
            "2024-12-20T09:00:00Z",
            "request",
            c1,
            "1.1.1",
            CURRENTLY_IS,
            ESME,
            payload="CURRENTLY-OLD-TARIFF",
        ),
        rec(
            "2024-12-20T09:00:02Z",
            "response",
            c1,
            "1.1.1",
            CURRENTLY_IS,
            ESME,
            "I0",
            "CURRENTLY-TARIFF-OK",
        ),
        # BRIGHT's own exchange
        rec(
            "2025-02-10T10:00:00Z",
            "request",
            b1,
            "4.1.1",
            BRIGHT_IS,
            ESME,
            payload='<sr:Request '
            'xmlns:sr="http://www.dccinterface.co.uk/ServiceUserGateway"><sr:Header>'
            f"<sr:RequestID>{b1}</sr:RequestID><sr:CommandVariant>1</sr:CommandVariant>"
            "<sr:ServiceReference>4.1</sr:ServiceReference><sr:ServiceReferenceVariant>4.1.1"
            "</sr:ServiceReferenceVariant></sr:Header><sr:Body><sr:ReadInstantaneousImportRegisters/>"
            "</sr:Body></sr:Request>",
        ),
        rec("2025-02-10T10:00:01Z", "acknowledgement", b1, "4.1.1", BRIGHT_IS, ESME, "I99"),
        rec(
            "2025-02-10T10:00:05Z",
            "response",
            b1,
            "4.1.1",
            BRIGHT_IS,
            ESME,
            "I0",
            duis_response(
                b1,
                "I0",
                "2025-02-10T10:00:05Z",
                f"<sr:MeterReadings><sr:{BRIGHT_REGISTER}>12345.678</sr:{BRIGHT_REGISTER}>"
                "<sr:ReadingTime>2025-02-10T10:00:04Z</sr:ReadingTime></sr:MeterReadings>",
            ),
        ),
        rec(
            "2025-02-11T06:30:00Z",
            "device_alert",
            rid(BRIGHT_IS, ESME, 9001),
            "",
            BRIGHT_IS,
            ESME,
            "8F35",
            "BRIGHT-ALERT-LOW-CREDIT",
        ),
        # LOOKAT, an Other User, reads the firmware version; then fails to reach the meter
        rec("2025-02-12T14:00:00Z", "request", l1, "11.2", LOOKAT_OU, ESME, payload=LOOKAT_SECRET),
        rec("2025-02-12T14:00:01Z", "acknowledgement", l1, "11.2", LOOKAT_OU, ESME, "I99"),
        rec(
            "2025-02-12T14:00:09Z",
            "response",
            l1,
            "11.2",
            LOOKAT_OU,
            ESME,
            "I0",
            LOOKAT_SECRET_RESPONSE,
        ),
        rec(
            "2025-02-13T08:15:00Z",
            "request",
            l2,
            "4.1.1",
            LOOKAT_OU,
            ESME,
            payload="LOOKAT-SECOND-READ",
        ),
        rec(
            "2025-02-13T08:15:30Z",
            "response",
            l2,
            "4.1.1",
            LOOKAT_OU,
            ESME,
            "E20",
            "LOOKAT-E20-DETAIL",
        ),
        rec(
            "2025-02-13T09:00:00Z",
            "device_alert",
            rid(LOOKAT_OU, ESME, 9002),
            "",
            LOOKAT_OU,
            ESME,
            "8F1C",
            "LOOKAT-ALERT-PRIVATE",
        ),
        # the Network Operator reads the meter: BRIGHT sees its title too
        rec(
            "2025-02-14T11:00:00Z",
            "request",
            w1,
            "4.1.1",
            WIRED_ED,
            ESME,
            payload="WIRED-PRIVATE-READ",
        ),
        rec(
            "2025-02-14T11:00:04Z", "response", w1, "4.1.1", WIRED_ED, ESME, "E4", "WIRED-E4-DETAIL"
        ),
        # BRIGHT's own tariff change, and its gas meter
        rec(
            "2025-02-15T12:00:00Z",
            "request",
            b2,
            "1.1.1",
            BRIGHT_IS,
            ESME,
            payload="plain text tariff & <notes",
        ),
        rec(
            "2025-02-15T12:00:08Z", "response", b2, "1.1.1", BRIGHT_IS, ESME, "I0", "tariff applied"
        ),
        rec("2025-02-16T07:00:00Z", "request", g1, "4.1.1", BRIGHT_IS, GSME, payload="<gas-read/>"),
    ]


def duis_capture() -> list[dict[str, str]]:
    """DUIS documents: BRIGHT's future-dated payment-mode change on ESME2 (the pre-command
    request, CommandVariant 4; the signed command, 5; its 8F66 outcome), and LOOKAT's request
    to the DCC to decommission that meter (a non-device request, 8.3, naming it)."""
    sr = 'xmlns:sr="http://www.dccinterface.co.uk/ServiceUserGateway"'
    fd = rid(BRIGHT_IS, ESME2, 3001)

    def request(request_id: str, variant: int, srv: str, body: str) -> str:
        return (
            f'<sr:Request {sr} '
            f'schemaVersion="5.4"><sr:Header><sr:RequestID>{request_id}</sr:RequestID>'
            f"<sr:CommandVariant>{variant}</sr:CommandVariant><sr:ServiceReference>{srv}</sr:ServiceReference>"
            f"<sr:ServiceReferenceVariant>{srv}</sr:ServiceReferenceVariant></sr:Header><sr:Body>{body}"
            "</sr:Body></sr:Request>"
        )

    when = "<sr:ExecutionDateTime>2025-03-01T00:00:00Z</sr:ExecutionDateTime>"
    outcome = (
        f'<sr:Response {sr} schemaVersion="5.4"><sr:Header><sr:RequestID>{fd}</sr:RequestID>'
        f"<sr:ResponseID>{ESME2}:{BRIGHT_IS}:5</sr:ResponseID><sr:ResponseCode>I0</sr:ResponseCode>"
        "<sr:ResponseDateTime>2025-03-01T00:00:04Z</sr:ResponseDateTime></sr:Header><sr:Body>"
        "<sr:ResponseMessage><sr:ServiceReference>1.6</sr:ServiceReference><sr:ServiceReferenceVariant>1.6"
        "</sr:ServiceReferenceVariant><sr:FutureDatedDeviceAlertMessage><sr:FutureDatedAlertCode>8F66"
        "</sr:FutureDatedAlertCode><sr:GBCSPayload>3QAAAAAA</sr:GBCSPayload><sr:InstructionNumber>1"
        "</sr:InstructionNumber><sr:TotalCommandInstructions>1</sr:TotalCommandInstructions>"
        "</sr:FutureDatedDeviceAlertMessage></sr:ResponseMessage></sr:Body></sr:Response>"
    )
    return [
        {
            "logged_at": "2025-02-20T09:00:00Z",
            "duis": request(
                fd, 4, "1.6", f"<sr:UpdatePaymentMode>{when}<sr:Credit/></sr:UpdatePaymentMode>"
            ),
        },
        {
            "logged_at": "2025-02-20T09:05:00Z",
            "duis": request(
                fd,
                5,
                "1.6",
                f"<sr:SignedPreCommand>{when}<sr:GBCSPayload>3QAAAAAAAFUR</sr:GBCSPayload>"
                "</sr:SignedPreCommand>",
            ),
        },
        {"duis": outcome},
        {
            "logged_at": "2025-02-21T10:00:00Z",
            "duis": request(
                rid(LOOKAT_OU, DCC, 40),
                8,
                "8.3",
                f"<sr:DecommissionDevice><sr:DeviceID>{ESME2}</sr:DeviceID></sr:DecommissionDevice>",
            ),
        },
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(db_url: str, *args: str, input: str | None = None) -> None:
    result = CliRunner().invoke(main, ["--db", db_url, *args], input=input, catch_exceptions=False)
    assert result.exit_code == 0, result.output


class Server(str):
    """The base URL, with the ids of records BRIGHT must not see."""

    def __new__(cls, base: str, hidden_ids: list[int], db_url: str = ""):
        made = super().__new__(cls, base)
        made.hidden_ids = hidden_ids
        made.db_url = (
            db_url  # the store the server serves (tests/web/test_browser_watches.py adds traffic)
        )
        return made


def build_store(folder: Path, template: Path) -> tuple[Path, list[int]]:
    """The story's store, built in `folder` from the migrated `template` with the command line:
    its file, and the ids of the records BRIGHT must not see."""
    db_url = sqlite_store_from(template, folder, "sat.db")
    (folder / "users.csv").write_text(
        f"user_id,party_id,party_name,role\n{BRIGHT_IS},BRIGHT,Bright Energy Supply "
        f"Ltd,IS\n{LOOKAT_OU},LOOKAT,Lookat Analytics Ltd,OU\n{CURRENTLY_IS},CURRENTLY,Currently "
        f"Energy plc,IS\n{WIRED_ED},WIRED,Wired Networks plc,ED\n"
    )
    (folder / "devices.csv").write_text(
        f"device_id,device_type,smets\n{ESME},ESME,2\n{GSME},GSME,2\n{ESME2},ESME,2\n"
    )
    (folder / "responsibilities.csv").write_text(
        "device_id,party_id,relation,valid_from,valid_to\n"
        f"{ESME},CURRENTLY,supplier,2024-06-01T00:00:00Z,2025-01-01T00:00:00Z\n"
        f"{ESME},BRIGHT,supplier,2025-01-01T00:00:00Z,\n"
        f"{ESME},WIRED,network_operator,2024-06-01T00:00:00Z,\n"
        f"{GSME},BRIGHT,supplier,2025-01-01T00:00:00Z,\n"
        f"{ESME2},BRIGHT,supplier,2025-01-01T00:00:00Z,\n"
    )
    sat = folder / "sat.jsonl"
    sat.write_text("".join(json.dumps(line) + "\n" for line in sat_lines()))
    for what in ("users", "devices", "responsibilities"):
        run_cli(db_url, "load", what, str(folder / f"{what}.csv"))
    run_cli(db_url, "ingest", str(sat))
    capture = folder / "duis.jsonl"
    capture.write_text("".join(json.dumps(line) + "\n" for line in duis_capture()))
    run_cli(db_url, "ingest", str(capture))
    run_cli(
        db_url, "accounts", "create", "bright.analyst", "--party", "BRIGHT", input=PASSWORD + "\n"
    )
    run_cli(
        db_url, "accounts", "create", "lookat.analyst", "--party", "LOOKAT", input=PASSWORD + "\n"
    )
    run_cli(db_url, "accounts", "create", "the.auditor", "--auditor", input=PASSWORD + "\n")

    store = open_store(db_url)  # the previous supplier's records, to ask for them by id as BRIGHT
    with store.connect() as conn:
        hidden_ids = [i["id"] for i in iter_search(conn, viewer_for(conn, "CURRENTLY"), Search())]
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")  # all of it in the file copied
    store.dispose()
    assert len(hidden_ids) == 2
    return folder / "sat.db", hidden_ids


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_in(page, base: str, username: str) -> None:
    page.goto(base + "/")
    assert page.url.startswith(base + "/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(base + "/")


def search_device(page, device: str) -> None:
    page.get_by_label("Device ID").fill(device)
    page.get_by_role("button", name="Search").click()
    page.wait_for_load_state()


def row_of(page, kind: str, title: str):
    """The one result row of this kind whose SRV title is `title`."""
    return (
        page.locator("table.records tbody tr")
        .filter(has=page.locator("td.c-kind", has_text=re.compile(f"^{kind}$")))
        .filter(has_text=title)
    )


DOCS = Path(__file__).resolve().parents[2] / "docs"
