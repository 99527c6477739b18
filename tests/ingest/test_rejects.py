"""ingest.rejects: what a load says it rejected is what its reject file holds, also when
Ctrl-C lands in the middle of a reject (the file's own rules are in test_input_edges.py)."""

from __future__ import annotations

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
