"""The SRV catalogue: every record shows its SRV's title."""
from __future__ import annotations

from dataclasses import dataclass

from .srv_data import SRV_ROWS


@dataclass(frozen=True, slots=True)
class Srv:
    srv: str
    title: str
    eligible_roles: tuple[str, ...]
    critical: bool
    non_device: bool
    target_device_types: tuple[str, ...]


CATALOGUE: dict[str, Srv] = {
    row[0]: Srv(row[0], row[1], tuple(filter(None, row[2].split(";"))), row[3], row[4],
                tuple(filter(None, row[5].split(";"))))
    for row in SRV_ROWS
}


def srv_title(srv: str) -> str:
    """The title DUIS gives an SRV; an SRV the catalogue lacks still gets a readable label."""
    if not srv:
        return ""
    known = CATALOGUE.get(srv)
    return known.title if known else f"SRV {srv} (not in the DUIS 5.x catalogue)"


def is_non_device(srv: str) -> bool:
    known = CATALOGUE.get(srv)
    return bool(known and known.non_device)


def search_srvs(text: str) -> list[str]:
    """SRV numbers matching a number or any words of a title, for the search box."""
    needle = text.strip().lower()
    if not needle:
        return []
    if needle in CATALOGUE:
        return [needle]
    return [s.srv for s in CATALOGUE.values() if needle in s.title.lower() or s.srv.startswith(needle + ".")]
