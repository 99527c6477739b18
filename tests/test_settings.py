"""Settings come from the environment through one module, checked, and documented in one table."""

from __future__ import annotations

import ast
from dataclasses import fields
from pathlib import Path

import pytest
from click.testing import CliRunner

from servicetrail import settings
from servicetrail.cli import main
from servicetrail.settings import SettingError, Settings
from servicetrail.store.limits import SearchTooBroad
from servicetrail.web.presenters import stopped
from servicetrail.webhooks.posting import shown_error

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "servicetrail"


def test_an_empty_environment_gives_the_defaults() -> None:
    assert Settings.from_environment({}) == Settings()
    assert Settings.from_environment({"SERVICETRAIL_BATCH": ""}) == Settings()  # empty is unset


def test_values_are_read_as_their_types() -> None:
    chosen = Settings.from_environment(
        {
            "SERVICETRAIL_BATCH": "500",
            "SERVICETRAIL_STATEMENT_TIMEOUT": "0.5",
            "SERVICETRAIL_PARSE_WORKERS": "0",
            "SERVICETRAIL_LOG_LEVEL": "INFO",
            "SERVICETRAIL_DATABASE_URL": "postgresql://st@localhost/st",
        }
    )
    assert (
        chosen.batch,
        chosen.statement_timeout,
        chosen.parse_workers,
        chosen.log_level,
        chosen.database_url,
    ) == (500, 0.5, 0, "info", "postgresql://st@localhost/st")


def test_the_webhook_retry_waits_are_held_parsed() -> None:
    def waits(text: str) -> tuple[float, ...] | None:
        return Settings.from_environment(
            {"SERVICETRAIL_WEBHOOK_RETRY_SECONDS": text}
        ).webhook_retry_seconds

    assert waits("5, 300,1800.5,") == (5.0, 300.0, 1800.5)
    assert waits(",") == ()  # no retries at all
    assert waits("  ") is None  # blank: Standard Webhooks' schedule


@pytest.mark.parametrize(
    "variable, value, expected",
    [
        ("SERVICETRAIL_BATCH", "lots", "whole number of 1 or more"),
        ("SERVICETRAIL_BATCH", "0", "whole number of 1 or more"),
        ("SERVICETRAIL_BATCH", "1_000", "whole number"),
        ("SERVICETRAIL_BATCH", "٣", "whole number"),
        ("SERVICETRAIL_POOL_SIZE", "-3", "whole number of 1 or more"),
        ("SERVICETRAIL_STATEMENT_TIMEOUT", "ten", "number of seconds"),
        ("SERVICETRAIL_STATEMENT_TIMEOUT", "nan", "number of seconds"),
        ("SERVICETRAIL_SEND_TIMEOUT", "0", "more than 0"),
        ("SERVICETRAIL_LOG_LEVEL", "loud", "one of critical"),
        ("SERVICETRAIL_DATABASE_URL", "servicetrail.db", "database URL"),
        ("SERVICETRAIL_PARTY_HEAVY", "0", "1 or more"),
        ("SERVICETRAIL_WEBHOOK_RETRY_SECONDS", "5,soon", "comma-separated seconds"),
        ("SERVICETRAIL_WEBHOOK_RETRY_SECONDS", "5,-1", "0 or more"),
        # two retries, not three with one left out (session 29's finding)
        ("SERVICETRAIL_WEBHOOK_RETRY_SECONDS", "5,,300", "a value is empty"),
        ("SERVICETRAIL_WEBHOOK_RETRY_SECONDS", ",5", "a value is empty"),
        ("SERVICETRAIL_WEBHOOK_RETRY_SECONDS", "5, ,300,", "a value is empty"),
        # accepted, they failed only when used (audit, session 19): past PostgreSQL's
        # statement_timeout, past islice's size, past a date, other scripts' digits
        ("SERVICETRAIL_STATEMENT_TIMEOUT", "3000000", "at most 2000000"),
        ("SERVICETRAIL_REGISTRY_BATCH", "99999999999999999999999", "at most 1000000000000000"),
        ("SERVICETRAIL_WEBHOOK_RETRY_SECONDS", "5,1e30", "at most 2000000"),
        ("SERVICETRAIL_SEND_TIMEOUT", "\uff15", "number of seconds"),
        # each month's origin is the name, '/' and the month: `x/` gave `x//2026-06` (46d)
        ("SERVICETRAIL_LOG_ORIGIN", "example.com/trail/", "without an empty part"),
        ("SERVICETRAIL_LOG_ORIGIN", "example.com//trail", "without an empty part"),
        ("SERVICETRAIL_LOG_ORIGIN", "/trail", "without an empty part"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable_and_the_value(
    variable: str, value: str, expected: str
) -> None:
    with pytest.raises(SettingError) as refused:
        Settings.from_environment({variable: value})
    message = str(refused.value)
    assert message.startswith(f"{variable}={value!r}") and expected in message


def test_the_cli_refuses_a_bad_setting_with_exit_2_and_no_traceback(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("SERVICETRAIL_STATEMENT_TIMEOUT", "soon")
    result = CliRunner().invoke(main, ["--db", f"sqlite:///{tmp_path / 'x.db'}", "db", "check"])
    assert result.exit_code == 2
    assert (
        result.stderr
        == "Error: SERVICETRAIL_STATEMENT_TIMEOUT='soon' is not valid: expected a number of "
        "seconds, 0 or more, at most 2000000\n"
    )
    assert isinstance(result.exception, SystemExit)
    assert not (tmp_path / "x.db").exists()  # refused before any command ran


def test_the_cli_reads_its_own_invocations_environment(tmp_path: Path, monkeypatch) -> None:
    settings.current()  # read once already in this process, as another test would have
    monkeypatch.setenv("SERVICETRAIL_DATABASE_URL", f"sqlite:///{tmp_path / 'from-env.db'}")
    assert CliRunner().invoke(main, ["db", "upgrade"]).exit_code == 0
    assert (tmp_path / "from-env.db").exists()


def test_only_the_settings_module_reads_the_environment() -> None:
    readers = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("environ", "getenv", "environb")
                and isinstance(node.value, ast.Name)
                and node.value.id == "os"
            ):
                readers.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert readers and all(r.startswith("settings.py:") for r in readers), readers


def test_the_settings_table_lists_every_setting_as_the_code_has_it() -> None:
    readme = (ROOT / "docs" / "operating.md").read_text()
    assert settings.markdown_table() in readme
    documented = {
        line.split("`")[1] for line in readme.splitlines() if line.startswith("| `SERVICETRAIL_")
    }
    assert documented == {f.metadata["variable"] for f in fields(Settings)}


SAYING_SECONDS = {
    "search-too-broad": lambda s: str(SearchTooBroad(s)),
    "page-stopped": lambda s: stopped(s, "It took", "."),
    "webhook-no-answer": lambda s: shown_error(None, "TimeoutError", s),
}


@pytest.mark.parametrize("said", SAYING_SECONDS.values(), ids=SAYING_SECONDS.keys())
@pytest.mark.parametrize(
    "value, words",
    [(0.00001, "0.00001 s"), (0.5, "0.5 s"), (10.0, "10 s"), (2_000_000.0, "2000000 s")],
)
def test_a_seconds_setting_is_said_as_people_write_seconds(said, value, words) -> None:
    """SERVICETRAIL_STATEMENT_TIMEOUT=0.00001 stopped a search "after 1e-05 s", and the
    largest allowed, "after 2e+06 s" (`:g`; audit 57h). Every seconds setting said in a
    message goes through domain.times.seconds_text."""
    shown = said(value)
    assert f" {words}" in shown and "e-0" not in shown and "e+0" not in shown, shown
