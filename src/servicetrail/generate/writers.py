"""Writers: the World as SAT and DUIS JSON Lines, as registry CSVs, or straight into the store."""

from __future__ import annotations

from typing import Any

import csv
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import IO

import orjson

from .registry import Population, population
from .stream import messages, records
from .world import World, format_ms

SAT_FIELDS = (
    "logged_at",
    "kind",
    "request_id",
    "srv",
    "user_id",
    "device_id",
    "response_code",
    "payload",
    "command_variant",
)


def sat_jsonl_lines(world: World) -> Iterator[bytes]:
    """SAT JSON Lines (SPEC section 4), one record a line, newline included: each message as SPEC
    section 4.1 says its DUIS form becomes, plus its command_variant (null but for requests)."""
    dumps = orjson.dumps
    for t, _, kind, rid, srv, user, device, code, doc, variant in messages(world):
        yield (
            dumps(
                {
                    "logged_at": format_ms(t),
                    "kind": kind,
                    "request_id": rid,
                    "srv": srv,
                    "user_id": user,
                    "device_id": device,
                    "response_code": code,
                    "payload": "" if kind == "acknowledgement" else doc,
                    "command_variant": variant,
                }
            )
            + b"\n"
        )


def duis_jsonl_lines(world: World) -> Iterator[bytes]:
    """A DUIS capture: {"logged_at": ..., "duis": "<sr:Request ...>"} a line, newline included."""
    dumps = orjson.dumps
    for m in messages(world):
        yield dumps({"logged_at": format_ms(m[0]), "duis": m[8]}) + b"\n"


def _write_lines(lines: Iterable[bytes], out: str | Path | IO[bytes], chunk: int = 2000) -> int:
    count = 0
    lines = iter(lines)
    with open(out, "wb") if isinstance(out, (str, Path)) else nullcontext(out) as f:
        while block := list(islice(lines, chunk)):
            f.write(b"".join(block))
            count += len(block)
    return count


def write_sat_jsonl(world: World, out: str | Path | IO[bytes]) -> int:
    """Write the SAT JSON Lines form to a path or a binary stream; returns the number of records."""
    return _write_lines(sat_jsonl_lines(world), out)


def write_duis_jsonl(world: World, out: str | Path | IO[bytes]) -> int:
    """Write the DUIS JSON Lines capture to a path or a binary stream; returns the number of
    messages."""
    return _write_lines(duis_jsonl_lines(world), out)


USERS_HEADER = ("user_id", "party_id", "party_name", "role")
DEVICES_HEADER = ("device_id", "device_type", "smets")
RESPONSIBILITIES_HEADER = ("device_id", "party_id", "relation", "valid_from", "valid_to")


def user_rows(world: World) -> Iterator[tuple[str, str, str, str]]:
    """Rows of users.csv: user_id, party_id, party_name, role."""
    for p in population(world).parties:
        for role, ids in p.roles.items():
            for uid in ids:
                yield uid, p.party_id, p.name, role


def device_rows(world: World) -> Iterator[tuple[str, str, str]]:
    """Rows of devices.csv: device_id, device_type, smets."""
    for d in population(world).devices:
        yield d.device_id, d.device_type, str(d.smets)


def responsibility_rows(world: World) -> Iterator[tuple[str, str, str, str, str]]:
    """Rows of responsibilities.csv: device_id, party_id, relation, valid_from, valid_to ('' =
    open)."""
    for r in population(world).responsibilities():
        yield (
            r.device_id,
            r.party_id,
            r.relation,
            r.valid_from.strftime("%Y-%m-%dT%H:%M:%SZ"),
            r.valid_to.strftime("%Y-%m-%dT%H:%M:%SZ") if r.valid_to else "",
        )


def write_registry(world: World, folder: str | Path) -> dict[str, Path]:
    """users.csv, devices.csv and responsibilities.csv in `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, header, rows in (
        ("users.csv", USERS_HEADER, user_rows(world)),
        ("devices.csv", DEVICES_HEADER, device_rows(world)),
        ("responsibilities.csv", RESPONSIBILITIES_HEADER, responsibility_rows(world)),
    ):
        path = folder / name
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(header)
            w.writerows(rows)
        written[name] = path
    return written


def write_world(
    world: World, folder: str | Path, *, sat: bool = True, duis: bool = False
) -> dict[str, Path]:
    """The registry CSVs plus `sat.jsonl` (and `duis.jsonl` when asked) in `folder`. A trail
    file of the form not asked for, an earlier world's, is removed: `ingest FOLDER` would
    read it beside this world's (the same traffic twice, or another world's)."""
    written = write_registry(world, folder)
    for name, wanted, write in (
        ("sat.jsonl", sat, write_sat_jsonl),
        ("duis.jsonl", duis, write_duis_jsonl),
    ):
        path = Path(folder) / name
        if wanted:
            written[name] = path
            write(world, path)
        else:
            path.unlink(missing_ok=True)
    return written


# ==================================================================== straight into the store


@dataclass
class LoadCounts:
    users: int = 0
    devices: int = 0
    responsibilities: int = 0
    records: int = 0
    duplicates: int = 0


class NotThisWorld(ValueError):
    """A store that holds records of another world or a real trail: generated traffic would
    lie in it for good, beside the real (the trail is append-only; audit 29e)."""


def _refuse_another_trail(engine: Any, world: World, pop: Population) -> None:
    """Only an empty store, or one holding this same world (a re-run adds nothing), takes it."""
    from ..store.queries import holds_message, registered_users, stored_record_count

    with engine.connect() as conn:
        users = registered_users(conn)
        own = {(user.user_id, user.party_id) for user in pop.users}
        if users and users != own:
            # another world's or a real registry: merged in, or a traceback on the first
            # User ID registered to another Party (review 29f)
            raise NotThisWorld(
                f"the store's registry holds {len(users)} User IDs, not this generated world's: "
                "generated traffic goes into an empty store (or one holding the same world)"
            )
        present = stored_record_count(conn)
        first = next(records(world), None)
        if present and (
            first is None or not holds_message(conn, first.request_id, first.kind, first.logged_at)
        ):
            raise NotThisWorld(
                f"the store already holds {present} records, not of this generated world: "
                "generated traffic goes into an empty store (or one holding the same world), "
                "never beside a real trail"
            )


def load_into(engine: Any, world: World, batch: int = 5000) -> LoadCounts:
    """Write the World into the store through the store writers, one transaction per batch.

    Idempotent like every loader: loading the same World again adds nothing."""
    from ..store.merkle_log import seal_store
    from ..store.registry import load_devices, load_responsibilities, load_users
    from ..store.writer import append_records

    pop = population(world)
    _refuse_another_trail(engine, world, pop)
    counts = LoadCounts()
    names = {p.party_id: p.name for p in pop.parties}
    for chunk in _chunks(pop.users, batch):
        with engine.begin() as conn:
            counts.users += _loaded(load_users(conn, [(u, names[u.party_id]) for u in chunk]))
    for chunk in _chunks(pop.devices, batch):
        with engine.begin() as conn:
            counts.devices += _loaded(load_devices(conn, chunk))
    for chunk in _chunks(pop.responsibilities(), batch):
        with engine.begin() as conn:
            counts.responsibilities += _loaded(load_responsibilities(conn, chunk))
    for chunk in _chunks(records(world), batch):
        with engine.begin() as conn:
            loaded, duplicates = append_records(conn, chunk)
        counts.records += loaded
        counts.duplicates += duplicates
    seal_store(engine)  # like an ingest, it signs the logs it touched (SPEC section 7)
    return counts


def _loaded(decided: list[Any]) -> int:
    """How many rows a registry batch loaded; a generated registry never conflicts with itself."""
    from ..domain.intervals import Conflict, Outcome

    for outcome in decided:
        if isinstance(outcome, Conflict):
            raise outcome
    return sum(outcome is Outcome.LOADED for outcome in decided)


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while block := list(islice(it, size)):
        yield block
