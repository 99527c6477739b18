"""The delivery worker's resolver (webhooks.addresses): a name resolved for one Party is not
held up by another Party's names whose DNS never answers."""

from __future__ import annotations

import asyncio
import ipaddress
import threading

import pytest

from servicetrail.webhooks import addresses, outbound
from servicetrail.webhooks.outbound import Target, UnsafeUrl

PUBLIC = ipaddress.ip_address("192.0.2.80")  # what the stubbed resolver answers
# how long a stubbed name that hangs waits before it gives up: a name resolved behind one is
# told by its answer coming while they all still hang, within half that, not by 1 s of wall,
# which a loaded machine could fail for the load alone (session 52)
HANGS = 60.0


async def holding(began: list[str], threads: int) -> None:
    """Until the names that hang hold `threads` threads (not a sleep of 0.05 s, which a
    loaded machine could pass before they do, and the test with it)."""
    for _ in range(3000):
        if len(began) >= threads:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(began)} threads of {threads} taken")


def test_a_name_two_parties_share_is_not_resolved_behind_one_partys_names_that_hang(
    monkeypatch,
) -> None:
    """A name's resolution was shared by every Party asking for it while it ran, and ran
    under the gate of the Party that asked first: a hostile Party whose own names hang (its
    half of the threads taken) that also named another Party's receiver held that Party's
    every attempt to it until its own names gave up (a 15 s timeout each, charged as the
    receiver's). Each Party now resolves it under its own gate; the answer is still shared."""
    released, began, ended = threading.Event(), [], []

    def stub(target: Target, allow_loopback=None):
        if target.host.endswith(".hangs.test"):
            began.append(target.host)
            released.wait(HANGS)
            ended.append(target.host)
        return PUBLIC

    monkeypatch.setattr(addresses, "resolve", stub)
    shared = Target("https", "hooks.shared.test", 443, "/")

    async def main() -> None:
        found = addresses.Addresses()
        found.open()
        try:
            hanging = [
                asyncio.ensure_future(
                    found.of(Target("https", f"h{n}.hangs.test", 443, "/"), "HOSTILE")
                )
                for n in range(8)
            ]
            await holding(began, addresses.PARTY_THREADS)  # its names hold its gate
            behind = asyncio.ensure_future(found.of(shared, "HOSTILE"))
            await asyncio.sleep(0.05)  # its resolution of the shared name waits at its gate
            assert await asyncio.wait_for(found.of(shared, "VICTIM"), HANGS / 2) == PUBLIC
            assert ended == []  # answered while the names hang
            released.set()
            assert await behind == PUBLIC
            await asyncio.gather(*hanging)
        finally:
            released.set()
            found.close()

    asyncio.run(main())


def test_an_address_checked_for_https_is_not_reused_for_http(monkeypatch, use_settings) -> None:
    """With loopback allowed, http:// may go to loopback alone; a public address checked for
    an https URL to the same host and port was reused for an http one, sent in clear."""
    use_settings(SERVICETRAIL_WEBHOOK_ALLOW_LOOPBACK=1)
    public = ("93.184.216.34", 80)
    monkeypatch.setattr(outbound.socket, "getaddrinfo", lambda *a, **k: [(2, 1, 6, "", public)])

    async def main() -> None:
        found = addresses.Addresses()
        found.open()
        try:
            secure = Target("https", "receiver.test", 80, "/")
            assert str(await found.of(secure, "P")) == public[0]
            with pytest.raises(UnsafeUrl):  # the name resolves to a public address alone
                await found.of(Target("http", "receiver.test", 80, "/"), "P")
        finally:
            found.close()

    asyncio.run(main())


def test_two_partys_names_that_hang_leave_threads_for_a_third(monkeypatch) -> None:
    """Each Party resolved on at most half of the resolver's eight threads: two hostile
    Parties whose names hang took all eight, and a third Party's name waited for one of
    theirs to give up (the system resolver's time, charged to its attempt). A Party still
    holds at most four, of threads enough for many Parties' at once."""
    released, began, ended = threading.Event(), [], []

    def stub(target: Target, allow_loopback=None):
        if target.host.endswith(".hangs.test"):
            began.append(target.host)
            released.wait(HANGS)
            ended.append(target.host)
        return PUBLIC

    monkeypatch.setattr(addresses, "resolve", stub)

    async def main() -> None:
        found = addresses.Addresses()
        found.open()
        try:
            hanging = [
                asyncio.ensure_future(
                    found.of(Target("https", f"h{n}.{party}.hangs.test", 443, "/"), party)
                )
                for party in ("HOSTILE", "ACCOMPLICE")
                for n in range(8)
            ]
            await holding(began, 2 * addresses.PARTY_THREADS)  # what threads they may
            fine = Target("https", "hooks.fine.test", 443, "/")
            assert await asyncio.wait_for(found.of(fine, "VICTIM"), HANGS / 2) == PUBLIC
            assert ended == []  # answered while the names hang
            released.set()
            await asyncio.gather(*hanging)
        finally:
            released.set()
            found.close()

    asyncio.run(main())
