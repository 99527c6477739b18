"""The Device page's time line: a page of visible items turned into rows, with no I/O.

An exchange (request, acknowledgement, responses sharing a Request ID) is one row; an alert
is a row of its own, since an alert answers no request. Rows run newest first by the time a
row shows (its request's); messages inside a row run oldest first, as on the record page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..domain.duis_terms import PRE_COMMAND
from ..domain.visibility import Access
from ..domain.model import Responsibility
from ..domain.records import is_alert


@dataclass
class TimelineRow:
    messages: list[dict[str, Any]] = field(default_factory=list)  # oldest first

    @property
    def newest(self) -> dict[str, Any]:
        return self.messages[-1]

    @property
    def lead(self) -> dict[str, Any]:
        """The message that names the row: the request that reached the Device (a CV 4
        pre-command and its signed command share a Request ID), else the oldest request,
        else the oldest message the page holds."""
        requests = [m for m in self.messages if m["kind"] == "request"]
        reached = [m for m in requests if m.get("command_variant") != PRE_COMMAND]
        return (reached or requests or self.messages)[0]

    @property
    def is_alert(self) -> bool:
        return is_alert(self.lead["kind"])

    @property
    def others(self) -> bool:
        """Another User's traffic, shown under MP141 (titles only)."""
        return any(m["access"] != Access.OWN for m in self.messages)

    @property
    def pre_command(self) -> bool:
        """Holds a CV 4 pre-command (sent to the DCC for signing)."""
        return any(m.get("command_variant") == PRE_COMMAND for m in self.messages)

    @property
    def never_reached_device(self) -> bool:
        """Only a pre-command here: no request of this exchange reached the Device."""
        return self.pre_command and self.lead.get("command_variant") == PRE_COMMAND

    @property
    def response_code(self) -> str:
        """The outcome a reader scans for: the latest response's code, else the
        acknowledgement's."""
        for kind in ("response", "acknowledgement", "device_alert", "dcc_alert"):
            found = [m for m in self.messages if m["kind"] == kind and m["response_code"]]
            if found:
                return found[-1]["response_code"]
        return ""

    def count(self, kind: str) -> int:
        return sum(1 for m in self.messages if m["kind"] == kind)


def _at(entry: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(entry["logged_at"].replace("Z", "+00:00"))


def timeline(items: list[dict[str, Any]]) -> list[TimelineRow]:
    """Rows for `items` given newest first, ordered by the time each row shows (its request's),
    newest first. A response without a Request ID, like an alert, shares it with nothing and
    stands alone."""
    rows: list[TimelineRow] = []
    by_request: dict[str, TimelineRow] = {}
    for entry in items:
        key = entry["request_id"]
        if is_alert(entry["kind"]) or not key:
            rows.append(TimelineRow([entry]))
            continue
        row = by_request.get(key)
        if row is None:
            row = by_request[key] = TimelineRow()
            rows.append(row)
        row.messages.insert(0, entry)
    # stable: rows starting at the same instant keep the page's order
    return sorted(rows, key=lambda row: _at(row.lead), reverse=True)


def own_intervals(registry: list[Responsibility]) -> list[Responsibility]:
    """The viewer's Responsibility intervals on the Device, oldest first."""
    return sorted(registry, key=lambda r: (r.valid_from, r.relation))
