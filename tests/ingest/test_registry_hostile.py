"""Registry CSVs that break the csv module or UTF-8 (issue 10, finding 3): every bad record is
a reject with its line and its bytes as they came, the good ones around it load, and a header
that is not one is a single clear error. Through the CLI; the reading is the loader's, before
the store, so on SQLite alone but for a record kept whole across a line break."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from tests.conftest import ON_SQLITE_ALONE
import pytest
from click.testing import Result
from sqlalchemy import text

USERS_HEADER = b"user_id,party_id,party_name,role\n"
GOOD = [b"90-B3-D5-1F-30-02-00-%02d,NORTH,North Energy plc,IS\n" % n for n in range(1, 6)]
BOM = "\ufeff".encode()


@dataclass(frozen=True)
class Loaded:
    """What `servicetrail load users` made of a file."""

    result: Result
    rejects: list[dict] | None  # the rejects file's records; None: it wrote no such file
    users: list[str]  # the store's user_ids after it

    def summary_is(self, loaded: int, rejected: int) -> bool:
        return self.result.stdout == f"loaded {loaded}, rejected {rejected}, skipped 0 duplicates\n"


@pytest.fixture
def load_users(cli, engine, tmp_path) -> Callable[[bytes], Loaded]:
    """Loads these bytes as a users file (the fixture lets no exception through: a traceback
    fails the test)."""

    def load(content: bytes) -> Loaded:
        users = tmp_path / "users.csv"
        users.write_bytes(content)
        result = cli("load", "users", users)
        written = tmp_path / "users.rejects.jsonl"
        rejects = None
        if written.exists():
            lines = written.read_text(encoding="utf-8").splitlines()
            rejects = [json.loads(line) for line in lines]
        with engine.connect() as conn:
            found = conn.execute(text("SELECT user_id FROM dcc_user")).scalars()
            return Loaded(result, rejects, sorted(found))

    return load


@ON_SQLITE_ALONE
def test_a_field_over_the_csv_modules_limit_is_one_reject_and_the_rest_loads(load_users):
    huge = b"90-B3-D5-1F-30-02-00-99,NORTH," + b"N" * 140_000 + b",IS\n"  # past 131,072 characters
    loaded = load_users(USERS_HEADER + GOOD[0] + GOOD[1] + huge + GOOD[2] + GOOD[3])
    assert loaded.result.exit_code == 1 and loaded.summary_is(4, 1)
    [reject] = loaded.rejects
    assert reject["line"] == 4
    assert reject["raw"] == huge.decode().rstrip("\n")  # never cut
    assert "field larger than field limit" in reject["reason"]
    assert len(loaded.users) == 4  # the good rows of the same batch were kept, and the rest read


@ON_SQLITE_ALONE
def test_lines_that_are_not_utf8_are_rejects_and_the_rest_loads(load_users):
    latin1 = b"90-B3-D5-1F-30-02-00-98,NORTH,Nord \xe9nergie,IS\n"
    loaded = load_users(USERS_HEADER + GOOD[0] + latin1 + GOOD[1] + b"\xff\xfe\n" + GOOD[2])
    assert loaded.result.exit_code == 1 and loaded.summary_is(3, 2)
    assert [r["line"] for r in loaded.rejects] == [3, 5]
    assert all(r["reason"] == "not UTF-8 text" for r in loaded.rejects)
    assert loaded.rejects[0]["raw"].startswith("90-B3-D5-1F-30-02-00-98,NORTH,Nord ")


@pytest.mark.parametrize(
    ("content", "said"),
    [
        pytest.param(
            b"user_id,party_id,party_n\xe4me,role\n" + GOOD[0],
            "header is not UTF-8",
            id="header_not_utf8",
        ),
        pytest.param(
            b"user_id,party_id," + b"x" * 140_000 + b",role\n" + GOOD[0],
            "not a CSV header",
            id="header_over_the_field_limit",
        ),
        pytest.param(
            # the header's line ran into the records, and Python's own words were the reason,
            # which asked whether the file was opened in universal-newline mode (audit 35c)
            (USERS_HEADER + GOOD[0] + GOOD[1]).replace(b"\n", b"\r"),
            "a carriage return inside the line (lines end in LF or CRLF)",
            id="lines_ending_in_cr_alone",
        ),
    ],
)
@ON_SQLITE_ALONE
def test_a_header_that_is_not_one_is_one_clear_error(load_users, content, said):
    loaded = load_users(content)
    assert loaded.result.exit_code == 2
    assert loaded.result.stderr.count("\n") == 1 and said in loaded.result.stderr
    assert "universal-newline" not in loaded.result.output
    assert "Traceback" not in loaded.result.output
    assert loaded.users == [] and loaded.rejects is None


def test_a_quoted_line_break_keeps_the_record_whole_and_the_line_numbers_right(load_users, engine):
    quoted = b'90-B3-D5-1F-30-02-00-50,SOUTH,"South\nPower Ltd",IS\n'
    loaded = load_users(USERS_HEADER + GOOD[0] + quoted + b"bad-eui,NORTH,North,IS\n" + GOOD[1])
    assert loaded.summary_is(3, 1)
    [reject] = loaded.rejects
    assert reject["line"] == 5 and reject["raw"] == "bad-eui,NORTH,North,IS"
    with engine.connect() as conn:
        assert (
            conn.execute(text("SELECT name FROM party WHERE party_id = 'SOUTH'")).scalar()
            == "South\nPower Ltd"
        )


@ON_SQLITE_ALONE
def test_a_quote_left_open_refuses_its_line_alone_and_the_lines_after_it_load(load_users):
    """The csv module read on from an unclosed quote to the end of the file or 131,072
    characters later: one reject swallowed thousands of good records (audit 20c). The line
    that opens it is refused; the lines after it are read again, as records of their own,
    both in the middle of the file and at its end."""
    many = [
        b"90-B3-D5-1F-30-03-%02X-%02X,NORTH,North Energy plc,IS\n" % divmod(n, 256)
        for n in range(2, 400)
    ]
    opened = b'90-B3-D5-1F-30-02-00-01,SOUTH,"South Power,IS\n'
    loaded = load_users(
        USERS_HEADER + opened + b"".join(many) + opened.replace(b"-01,", b"-99,") + GOOD[1]
    )
    assert loaded.result.exit_code == 1 and loaded.summary_is(len(many) + 1, 2)
    rejects = loaded.rejects
    assert [(r["line"], r["raw"]) for r in rejects] == [
        (2, opened.decode().rstrip("\n")),
        (len(many) + 3, opened.decode().rstrip("\n").replace("-01,", "-99,")),
    ]
    assert all("a quote opened on this line is not closed" in r["reason"] for r in rejects)
    assert "not within 16 lines" in rejects[0]["reason"]
    assert "unexpected end of data" in rejects[1]["reason"]
    assert len(loaded.users) == len(many) + 1


@ON_SQLITE_ALONE
def test_a_carriage_return_inside_a_line_is_named_as_such(load_users):
    """Python's own words asked whether the file was opened in universal-newline mode."""
    joined = GOOD[0].rstrip(b"\n") + b"\r" + GOOD[1]
    loaded = load_users(USERS_HEADER + joined + GOOD[2])
    assert loaded.summary_is(1, 1)
    [reject] = loaded.rejects
    assert reject["line"] == 2 and reject["raw"] == joined.decode().rstrip("\n")
    assert reject["reason"] == (
        "not a CSV record: a carriage return inside the line (lines end in LF or CRLF)"
    )


@ON_SQLITE_ALONE
def test_a_quote_left_open_before_an_over_long_line_refuses_the_two_alone(load_users):
    """The csv module read on from the open quote into a line over the limit: one reject
    spanned them both and the good lines between them (review, session 21)."""
    opened = b'90-B3-D5-1F-30-02-00-01,SOUTH,"South Power,IS\n'
    huge = b"90-B3-D5-1F-30-02-00-99,NORTH," + b"N" * (1 << 20) + b",IS\n"
    loaded = load_users(USERS_HEADER + GOOD[1] + opened + GOOD[2] + GOOD[3] + huge + GOOD[4])
    assert loaded.summary_is(4, 2)
    rejects = loaded.rejects
    assert [r["line"] for r in rejects] == [3, 6]
    assert rejects[0]["raw"] == opened.decode().rstrip("\n")
    assert "a quote opened on this line is not closed" in rejects[0]["reason"]
    assert rejects[1]["raw"] == huge.decode().rstrip("\n")  # copied from the file, as it came
    assert "a line of over" in rejects[1]["reason"]
    assert len(loaded.users) == 4


@pytest.mark.parametrize(
    ("content", "raw"),
    [
        # two files joined one after the other: the second one's header was refused as a
        # record whose user_id is no EUI-64 ('user_id'), which sent an operator looking for a
        # Device
        pytest.param(
            USERS_HEADER + GOOD[0] + b"User_ID, party_id ,party_name,role\r\n" + GOOD[1],
            "User_ID, party_id ,party_name,role",
            id="in_other_words",
        ),
        # two files saved as Excel's "CSV UTF-8", each beginning with a byte order mark,
        # joined: the second header was refused as a user_id '\ufeffuser_id' (review 47j)
        pytest.param(
            BOM + USERS_HEADER + GOOD[0] + BOM + USERS_HEADER + GOOD[1],
            "\ufeffuser_id,party_id,party_name,role",
            id="after_a_byte_order_mark",
        ),
    ],
)
@ON_SQLITE_ALONE
def test_a_header_line_met_again_is_refused_as_such_and_the_rest_loads(load_users, content, raw):
    loaded = load_users(content)
    assert loaded.result.exit_code == 1 and loaded.summary_is(2, 1)
    [reject] = loaded.rejects
    assert reject["line"] == 3 and reject["raw"] == raw
    assert reject["reason"].startswith("the header line again")
    assert len(loaded.users) == 2
