"""ingest.rejects: what a load says it rejected is what its reject file holds, also when
Ctrl-C lands in the middle of a reject (the file's own rules are in test_input_edges.py)."""

from __future__ import annotations

import fcntl
import json
import os

import pytest

from servicetrail.ingest.rejects import RejectFile


def _interrupted(monkeypatch, after_the_write: bool) -> None:
    """Ctrl-C as SIGINT lands: right after an entry's write returns, or before it begins."""
    write = RejectFile._write

    def interrupted(self, *args, **kwargs):
        if after_the_write:
            write(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(RejectFile, "_write", interrupted)


@pytest.mark.parametrize("after_the_write", [True, False], ids=["written", "not-written"])
def test_a_reject_interrupted_is_counted_as_the_file_holds_it(
    tmp_path, monkeypatch, after_the_write
):
    """A registry load stopped by Ctrl-C said "rejected 204" of a reject file holding 205
    (CI, session 58): the interrupt came between an entry's write and its count."""
    source = tmp_path / "devices.csv"
    source.write_text("device_id,device_type,smets\n")
    rejects = RejectFile(tmp_path / "devices.rejects.jsonl", sources=[source], inputs=[source])
    rejects.add(2, "not an EUI-64", "bad-1,ESME,2", source)
    _interrupted(monkeypatch, after_the_write)
    with pytest.raises(KeyboardInterrupt):
        rejects.add(3, "not an EUI-64", "bad-2,ESME,2", source)
    rejects.close()
    held = (tmp_path / "devices.rejects.jsonl").read_text().count("\n")
    assert rejects.count == held == (2 if after_the_write else 1)


def test_an_inputs_entries_resolve_its_folder_once_and_name_each_input_as_its_own(
    tmp_path, monkeypatch
):
    """Each entry resolved its input's folder again (realpath: three lstat calls), 2.9 s of
    CPU for the 240,000 conflicts of test_streaming; now once for a run of entries of the
    same input. Entries of inputs in turn still name each its own."""
    from servicetrail.ingest import rejects as module

    (tmp_path / "b").mkdir()
    one, other = tmp_path / "a.jsonl", tmp_path / "b" / "a.jsonl"
    rejects = RejectFile(tmp_path / "shared.rejects.jsonl", sources=[one, other])
    resolved = []
    realpath = module.os.path.realpath
    monkeypatch.setattr(
        module.os.path,
        "realpath",
        lambda path, **how: resolved.append(path) or realpath(path, **how),
    )
    for line, source in enumerate([one, one, one, other, other, one], start=1):
        rejects.add(line, "not JSON", "{", source)
    rejects.close()
    assert len(resolved) == 3  # one, then other, then one again
    entries = [json.loads(e) for e in (tmp_path / "shared.rejects.jsonl").read_text().splitlines()]
    assert [(e["file"], e["line"]) for e in entries] == [
        (str(one), 1),
        (str(one), 2),
        (str(one), 3),
        (str(other), 4),
        (str(other), 5),
        (str(one), 6),
    ]


def test_ctrl_c_waiting_for_another_runs_lock_leaves_no_descriptor_open(tmp_path, monkeypatch):
    """Ctrl-C landing while a run waited for another run's lock on the reject file left the
    file's descriptor open in an in-process run (session 59)."""
    source = tmp_path / "devices.csv"
    source.write_text("device_id,device_type,smets\n")
    path = tmp_path / "devices.rejects.jsonl"
    path.touch()
    flock = fcntl.flock

    def interrupted_in_the_wait(fd, operation):
        if operation == fcntl.LOCK_EX:  # the blocking wait, after the other run was seen
            raise KeyboardInterrupt
        flock(fd, operation)

    with path.open("ab") as other_run:
        flock(other_run.fileno(), fcntl.LOCK_EX)
        monkeypatch.setattr(fcntl, "flock", interrupted_in_the_wait)
        with pytest.raises(KeyboardInterrupt):
            RejectFile(path, sources=[source], inputs=[source])
        monkeypatch.undo()
        open_on_it = [
            fd for fd in os.listdir("/proc/self/fd") if _names(f"/proc/self/fd/{fd}", path)
        ]
        assert open_on_it == [str(other_run.fileno())]


def _names(link: str, path) -> bool:
    try:
        return os.readlink(link) == str(path)
    except OSError:  # the listing's own descriptor, closed since
        return False
