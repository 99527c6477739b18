"""Accounts and sessions when things happen at once, on both engines: a sign-in that checked
the old password while `accounts passwd` or `accounts disable` ran keeps no session, and two
`accounts create` of one name give one account and one clean refusal."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy.engine import Engine

from servicetrail.store.accounts import (
    AccountError,
    change_password,
    create_account,
    set_disabled,
    verified_password_hash,
)
from servicetrail.store.sessions import create_session, load_session
from tests import personas as P

OLD, NEW = "the old password 1", "the new password 2"


@pytest.fixture
@P.starts_with_personas
def analyst(engine: Engine) -> str:
    P.load_personas(engine)
    with engine.begin() as conn:
        create_account(conn, "np.analyst", P.NORTHPOWER, OLD)
        return verified_password_hash(conn, "np.analyst", OLD) or ""


def test_a_session_is_refused_once_the_password_it_was_checked_with_is_gone(engine, analyst):
    with engine.begin() as conn:
        change_password(conn, "np.analyst", NEW)
        assert create_session(conn, "np.analyst", analyst) is None
        assert create_session(conn, "np.analyst", "not a hash at all") is None
        fresh = verified_password_hash(conn, "np.analyst", NEW)
        assert fresh is not None and create_session(conn, "np.analyst", fresh) is not None
        set_disabled(conn, "np.analyst", True)
        assert create_session(conn, "np.analyst", fresh) is None


@pytest.mark.parametrize("change", ["passwd", "disable"])
def test_a_session_made_while_the_password_changes_is_ended_with_the_others(
    engine, analyst, change
):
    """The session's transaction is still open when the change starts: the change waits for
    it, then ends it. (Made in a step apart from its check, the session outlived the change.)"""
    made, session = threading.Event(), []

    def sign_in() -> None:
        with engine.begin() as conn:
            session.append(create_session(conn, "np.analyst", analyst))
            made.set()
            time.sleep(0.3)  # the change starts meanwhile

    signing_in = threading.Thread(target=sign_in)
    signing_in.start()
    assert made.wait(10)
    with engine.begin() as conn:
        if change == "passwd":
            change_password(conn, "np.analyst", NEW)
        else:
            set_disabled(conn, "np.analyst", True)
    signing_in.join()
    assert session[0] is not None  # it was made: the check came first
    with engine.begin() as conn:
        set_disabled(conn, "np.analyst", False)  # a disabled account's sessions never show
        assert load_session(conn, session[0]) is None


@P.starts_with_personas
def test_two_creations_of_one_account_give_one_account_and_a_clean_refusal(engine):
    P.load_personas(engine)
    start, outcomes = threading.Barrier(6), []

    def create() -> None:
        start.wait()
        try:
            with engine.begin() as conn:
                create_account(conn, "twin", P.NORTHPOWER, OLD)
            outcomes.append("made")
        except AccountError as e:
            outcomes.append(str(e))

    threads = [threading.Thread(target=create) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["account 'twin' already exists"] * 5 + ["made"]


@P.starts_with_personas
def test_creations_of_names_that_differ_by_case_alone_give_one_account(engine):
    """`NP`, `np` and `Np` created at once: the case check ran before the insert, and each
    creation passed it before any other committed, so all three were made (review, session
    16). Creations of accounts now take their turn."""
    P.load_personas(engine)
    names = ["np", "NP", "Np", "nP"]
    start, outcomes = threading.Barrier(len(names)), []

    def create(name: str) -> None:
        start.wait()
        try:
            with engine.begin() as conn:
                create_account(conn, name, P.NORTHPOWER, OLD)
            outcomes.append("made")
        except AccountError as e:
            outcomes.append("refused" if "differ by more than case" in str(e) else str(e))

    threads = [threading.Thread(target=create, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["made"] + ["refused"] * (len(names) - 1)


@P.starts_with_personas
def test_a_statements_parameters_never_show_in_an_error(engine):
    """An error's text may reach a log or a terminal: a password hash must not be in it. (A
    unique key's error names the key's value only; PostgreSQL's NOT NULL error shows the whole
    row, which no statement of ours can meet: every column is filled by the code.)"""
    from sqlalchemy import insert
    from sqlalchemy.exc import IntegrityError

    from servicetrail.store.schema import account

    P.load_personas(engine)
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc)
    row = {"username": "dup", "party_id": None, "password_hash": "SECRET-HASH", "created_at": now}
    with pytest.raises(IntegrityError) as raised, engine.begin() as conn:
        conn.execute(insert(account), [row, row])
    assert "SECRET-HASH" not in str(raised.value)
