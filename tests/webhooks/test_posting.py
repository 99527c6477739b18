"""One webhook attempt's request (webhooks.posting), as the delivery worker sends it, against
real sockets on 127.0.0.1: to the address checked (no second resolution), no redirect
followed, an endless answer read a moment at most, and a failed connection shown to its Party
as one class, its client's words kept for the operator."""

from __future__ import annotations

import contextlib
import socket
import threading

import pytest

from servicetrail import settings
from servicetrail.webhooks import outbound


def one_shot_server(
    reply: bytes, endless: bool = False, sent: list[int] | None = None
) -> tuple[int, list[bytes], threading.Thread]:
    """A TCP server that answers each connection with `reply` (then, if `endless`, keeps
    sending until the client closes, adding to `sent` each piece its socket took, then 0),
    recording what it was sent."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    seen: list[bytes] = []

    def serve() -> None:
        listener.settimeout(15)
        try:
            while True:
                conn, _ = listener.accept()
                with conn:
                    conn.settimeout(5)
                    data = b""
                    while b"\r\n\r\n" not in data:
                        data += conn.recv(65536)
                    seen.append(data)
                    try:
                        conn.sendall(reply)
                        while endless:
                            conn.sendall(b"x" * 65536)
                            if sent is not None:
                                sent.append(65536)
                    except OSError:
                        pass
                    if sent is not None:
                        sent.append(0)
        except OSError:
            pass
        finally:
            listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener.getsockname()[1], seen, thread


def attempt(url: str, timeout: float = 5.0):
    """One delivery attempt of the worker to `url`: its (status, error)."""
    import asyncio

    from servicetrail.store.outbox import Due
    from servicetrail.webhooks.deliver import Deliverer, client_session
    from servicetrail.webhooks.signing import new_secret

    deliverer = Deliverer(engine=None, schedule=[1], timeout=timeout)  # type: ignore[arg-type]
    event = {"event_id": 1, "watch_id": 1, "matched_at": "2025-01-01T00:00:00Z", "record": {}}
    due = Due(1, 1, 0, url, new_secret(), event)

    async def main():
        async with client_session(4, timeout) as session:
            return await asyncio.wait_for(deliverer._post(session, due), timeout)

    return asyncio.run(main())


def test_a_failed_connection_tells_its_party_nothing_of_the_port(monkeypatch) -> None:
    """A closed port, a port that speaks no TLS and one that never answers are one failure to
    the Party (the HTTP client's words told them apart for any host and port a logged-in User
    named: a port scanner, audit 56c); the operator's log keeps the client's words. Answers
    and servicetrail's refusals of a URL are said as they are."""
    from servicetrail.store.outbox import Due
    from servicetrail.webhooks.deliver import Deliverer
    from servicetrail.webhooks.worker_report import FailureLog

    monkeypatch.setenv("SERVICETRAIL_WEBHOOK_ALLOW_LOOPBACK", "1")
    settings.reload()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: the connection is refused
    talker = socket.socket()
    talker.bind(("127.0.0.1", 0))
    talker.listen(1)

    def no_tls() -> None:
        talker.settimeout(5)
        with contextlib.suppress(OSError), talker.accept()[0] as conn:
            conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

    threading.Thread(target=no_tls, daemon=True).start()
    try:
        attempts = [
            attempt(f"http://127.0.0.1:{closed.getsockname()[1]}/hook"),
            attempt(f"https://127.0.0.1:{talker.getsockname()[1]}/hook"),
            (None, "no answer in 5 s"),
            (None, "refused: webhooks may not be sent to 10.0.0.1: it is a private address"),
            (503, ""),
        ]
    finally:
        closed.close()
        talker.close()
    deliverer = Deliverer(engine=None, schedule=[1], timeout=5)  # type: ignore[arg-type]
    for n, (status, error) in enumerate(attempts, start=1):
        deliverer._outcome(Due(n, 1, 0, "", "", {}), status, error)
    shown = [o.error for o in deliverer._outcomes]
    assert len(set(shown[:3])) == 1 and shown[0].startswith("no answer"), shown
    assert shown[3:] == [attempts[3][1], "answered 503"]
    details = [o.detail for o in deliverer._outcomes]
    assert len(set(details[:3])) == 3 and all(details), details
    log = FailureLog(every=0)
    with pytest.MonkeyPatch.context() as m:
        said: list[str] = []
        m.setattr(
            "servicetrail.webhooks.worker_report.log.warning",
            lambda text, *args: said.append(text % args),
        )
        log.add(deliverer._outcomes)
    assert all(detail[:100] in said[0] for detail in details[:3]), said


def test_a_redirect_is_not_followed(monkeypatch) -> None:
    monkeypatch.setenv("SERVICETRAIL_WEBHOOK_ALLOW_LOOPBACK", "1")
    settings.reload()
    port, seen, _ = one_shot_server(
        b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://169.254.169.254/\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    status, _ = attempt(f"http://127.0.0.1:{port}/hook")
    assert status == 307 and len(seen) == 1


def test_an_endless_answer_is_read_only_a_little(monkeypatch) -> None:
    import time

    monkeypatch.setenv("SERVICETRAIL_WEBHOOK_ALLOW_LOOPBACK", "1")
    settings.reload()
    sent: list[int] = []
    port, _, _ = one_shot_server(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n", endless=True, sent=sent
    )
    started = time.monotonic()
    # an attempt that read the endless answer would end at its time limit, 30 s; one that
    # reads a little ends at once. Half the limit tells them apart: a bound of 3 s with a
    # limit of 5 also held the first attempt's import of aiohttp, which a loaded machine
    # can stretch past it for the load alone
    status, _ = attempt(f"http://127.0.0.1:{port}/hook", timeout=30)
    assert status == 200 and time.monotonic() - started < 15
    # and only a little of it: MAX_RESPONSE_BYTES, and what the kernel's buffers took before
    # the connection was closed (~3 MB here). Reading on for the whole BODY_SECONDS took
    # 300-480 MB at load 7; 32 MiB tells the two apart on any machine that can run the suite
    deadline = time.monotonic() + 10
    while not sent or sent[-1] != 0:
        assert time.monotonic() < deadline, "the connection was not closed"
        time.sleep(0.01)
    assert sum(sent) < 32 * 1024 * 1024


def test_the_connection_goes_to_the_checked_address(monkeypatch) -> None:
    """The name resolves once, to the checked loopback address; a second resolution would
    give a private one (DNS rebinding). The request arrives, with the name as its Host."""
    monkeypatch.setenv("SERVICETRAIL_WEBHOOK_ALLOW_LOOPBACK", "1")
    settings.reload()
    port, seen, _ = one_shot_server(b"HTTP/1.1 204 No Content\r\n\r\n")
    answers = iter([["127.0.0.1"]])

    def rebinding(host, p, *args, **kwargs):
        found = next(answers, ["10.9.9.9"])
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, p)) for a in found]

    monkeypatch.setattr(outbound.socket, "getaddrinfo", rebinding)
    status, error = attempt(f"http://hooks.rebind.test:{port}/hook")
    assert (status, error) == (204, "")
    assert f"host: hooks.rebind.test:{port}".encode() in seen[0].lower()
