"""A seeded, reproducible, streaming generator of a DCC-shaped world.

`World` holds the parameters. From it come, always the same for the same World:

- the registry (`population(world)`): Parties in every User Role (IS, ES, GS, ED, GT,
  OU, RSA and a future role, `XR`), their User IDs, Devices of every type in SMETS1 and
  SMETS2, and Responsibility intervals (`supplier`, `network_operator`) with changes of
  supplier and of network operator, gaps, and open ends;
- the SAT records (`messages(world)`), streamed lazily in time order, in the shapes the
  DCC sends (DUIS Schema V5.4, every document valid against it): request ->
  acknowledgement (I99, +1 s) -> response; critical requests as a pre-command (Command
  Variant 4) and, later, the signed command (5) under the same RequestID; non-device
  requests (8) answered at once; future-dated commands, cancellations and their 8F66/8F67
  outcomes; SMETS1 responses and alerts inside the S1SP's signed response; device alerts,
  DCC alerts (most naming a Device) and DCC-scheduled reads with no RequestID; with skewed
  (Zipf-like) activity per Device. Every message carries its DUIS XML document, so one
  stream feeds both the SAT JSON Lines and the DUIS capture writers.

The stream holds only the registry and the in-flight messages (a few minutes' worth, plus
the outcomes of future-dated commands not yet due) in memory, so ten million records cost
little more memory than ten.

Run `servicetrail generate --help` to write a world to files or into the store.
"""

from __future__ import annotations

from .documents import NS
from .parties import PartyInfo
from .registry import Population, Showcase, population
from .stream import (
    CODE,
    COMMAND_VARIANT,
    DEVICE_ID,
    DOCUMENT,
    KIND,
    REQUEST_ID,
    SEQ,
    SRV,
    USER_ID,
    Message,
    T,
    messages,
    records,
)
from .traffic import (
    AGENT,
    EXPORT,
    FUTURE,
    OPERATOR,
    OTHER_OPERATOR,
    OTHER_SUPPLIER,
    OTHER_USER,
    SUPPLIER,
)
from .world import (
    DCC_ID,
    FUTURE_ROLE,
    MAX_DEVICES_BY_DEFAULT,
    MIN_DEVICES,
    MIN_PARTIES,
    MIN_SPAN,
    SHOWCASE_DEVICE_ID,
    UTC,
    World,
    format_ms,
    to_datetime,
)
from .writers import (
    DEVICES_HEADER,
    RESPONSIBILITIES_HEADER,
    SAT_FIELDS,
    USERS_HEADER,
    LoadCounts,
    device_rows,
    duis_jsonl_lines,
    load_into,
    responsibility_rows,
    sat_jsonl_lines,
    user_rows,
    write_duis_jsonl,
    write_registry,
    write_sat_jsonl,
    write_world,
)

__all__ = [
    "AGENT",
    "CODE",
    "COMMAND_VARIANT",
    "DCC_ID",
    "DEVICES_HEADER",
    "DEVICE_ID",
    "DOCUMENT",
    "EXPORT",
    "FUTURE",
    "FUTURE_ROLE",
    "KIND",
    "MAX_DEVICES_BY_DEFAULT",
    "MIN_DEVICES",
    "MIN_PARTIES",
    "MIN_SPAN",
    "NS",
    "OPERATOR",
    "OTHER_OPERATOR",
    "OTHER_SUPPLIER",
    "OTHER_USER",
    "REQUEST_ID",
    "RESPONSIBILITIES_HEADER",
    "SAT_FIELDS",
    "SEQ",
    "SHOWCASE_DEVICE_ID",
    "SRV",
    "SUPPLIER",
    "T",
    "USERS_HEADER",
    "USER_ID",
    "UTC",
    "LoadCounts",
    "Message",
    "PartyInfo",
    "Population",
    "Showcase",
    "World",
    "device_rows",
    "duis_jsonl_lines",
    "format_ms",
    "load_into",
    "messages",
    "population",
    "records",
    "responsibility_rows",
    "sat_jsonl_lines",
    "to_datetime",
    "user_rows",
    "write_duis_jsonl",
    "write_registry",
    "write_sat_jsonl",
    "write_world",
]
