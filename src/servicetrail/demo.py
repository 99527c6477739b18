"""The demo: a realistic SAT in the store, and one web account per featured Party.

`build_demo(engine)` loads a generated World (every User Role, SMETS1 and SMETS2 Devices
of every type, changes of supplier and of network operator, alerts, error responses)
and creates the demo logins. The World always holds the showcase Device
(`SHOWCASE_DEVICE_ID`), whose trail tells the MP141 story: requests by other Users, a
change of supplier in the middle, alerts and an E4 refusal. Every persona below plays a
part in that story, so logging in as each in turn shows what MP141 changes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

from sqlalchemy import select
from sqlalchemy.engine import Engine

from .generate import (
    FUTURE_ROLE,
    SHOWCASE_DEVICE_ID,
    LoadCounts,
    Showcase,
    World,
    load_into,
    population,
)

UTC = timezone.utc
DEMO_SEED = 141
DEMO_RECORDS = 50_000
DEMO_PARTIES = 130
#: Every demo account's password (the demo is for looking at, never for real data).
DEMO_PASSWORD = "mp141-demo-password"

__all__ = [
    "DEMO_PASSWORD",
    "DEMO_RECORDS",
    "DEMO_SEED",
    "SHOWCASE_DEVICE_ID",
    "DemoLogin",
    "DemoLogins",
    "build_demo",
    "demo_logins",
    "demo_world",
]


@dataclass(frozen=True)
class DemoLogin:
    username: str
    password: str
    party_id: str
    party_name: str
    description: str  # one line: who this is and what they will see


class DemoLogins(list[DemoLogin]):
    """The logins, plus the showcase Device to point people at and what was loaded."""

    def __init__(
        self,
        logins: list[DemoLogin],
        showcase: Showcase,
        world: World,
        loaded: LoadCounts | None = None,
    ) -> None:
        super().__init__(logins)
        self.showcase = showcase
        self.showcase_device_id = showcase.device_id
        self.world = world
        self.loaded = loaded  # None when the logins were only described, not built


def demo_world(
    records: int = DEMO_RECORDS, seed: int = DEMO_SEED, end: datetime | None = None
) -> World:
    """The demo's World: a year of traffic up to `end` (default: today, midnight UTC)."""
    if end is None:
        now = datetime.now(UTC)
        end = datetime(now.year, now.month, now.day, tzinfo=UTC)
    return World(
        n_records=records,
        n_devices=max(200, min(20_000, records // 25)),
        n_parties=DEMO_PARTIES,
        seed=seed,
        start=end - timedelta(days=365),
        end=end,
        showcase=True,
    )


def build_demo(
    engine: Engine,
    records: int = DEMO_RECORDS,
    seed: int = DEMO_SEED,
    *,
    end: datetime | None = None,
    password: str = DEMO_PASSWORD,
) -> DemoLogins:
    """Load the demo World into the store and create the demo accounts; returns their logins.

    Safe to run again on the same store: what is there already is skipped.
    """
    from .store.accounts import create_account
    from .store.schema import account

    world = demo_world(records, seed, end)
    loaded = load_into(engine, world)
    logins = _logins(world, password, population(world).showcase)
    with engine.begin() as conn:
        for login in logins:
            if conn.execute(
                select(account.c.username).where(account.c.username == login.username)
            ).first():
                continue
            create_account(conn, login.username, login.party_id, login.password)
    logins.loaded = loaded
    return logins


def demo_logins(
    engine: Engine | None = None, seed: int = DEMO_SEED, *, password: str = DEMO_PASSWORD
) -> DemoLogins:
    """The logins `build_demo` created, without building anything (for a store built earlier).

    The Parties depend on the seed alone; the change-of-supplier date in the descriptions
    depends on the day the demo was built, so pass the store's engine to read it from there.
    """
    world = demo_world(seed=seed)
    show = population(world).showcase
    assert show is not None
    if engine is not None:
        from .store.schema import responsibility

        r = responsibility.c
        with engine.connect() as conn:
            change = conn.execute(
                select(r.valid_from).where(
                    r.device_id == show.device_id,
                    r.relation == "supplier",
                    r.party_id == show.new_supplier,
                )
            ).scalar()
        if change is not None:
            show = replace(show, change_of_supplier=change)
    return _logins(world, password, show)


def _logins(world: World, password: str, show: Showcase | None) -> DemoLogins:
    assert show is not None  # demo_world always asks for it
    pop = population(world)
    logins = [
        DemoLogin(username, password, party_id, pop.party_name(party_id), description)
        for username, party_id, description in _personas(show)
    ]
    return DemoLogins(logins, show, world)


def _personas(show: Showcase) -> list[tuple[str, str, str]]:
    device = show.device_id
    cos = show.change_of_supplier.strftime("%Y-%m-%d")
    return [
        (
            "supplier",
            show.new_supplier,
            f"Responsible Supplier of {device} since the change of supplier on {cos}: its own "
            "traffic in full, and (MP141) the titles, never payloads, of every other User's "
            "requests and responses to its Devices while it is responsible; nothing from before "
            f"{cos}, no one else's alerts",
        ),
        (
            "old-supplier",
            show.old_supplier,
            f"the supplier of {device} until {cos}: keeps its history, including other Users' "
            "titles up to the change, nothing that others sent to it after, and its own late "
            "tariff update refused with E4",
        ),
        (
            "network",
            show.network_operator,
            f"Network Operator (certificate holder) of {device}: its own traffic, plus the titles "
            "of every User's requests and responses to the Devices it holds the certificate on",
        ),
        (
            "otheruser",
            show.other_user,
            f"Other User: its own requests and responses only (e.g. profile reads of {device}); "
            "MP141 gives Other Users nothing more",
        ),
        (
            "agent",
            show.agent,
            f"Registered Supplier Agent: its own traffic only (configuration reads of {device} "
            "among it)",
        ),
        (
            "newrole",
            show.future_role_party,
            f"a User in a future User Role '{FUTURE_ROLE}', treated like an Other User: its own "
            "traffic only",
        ),
    ]
