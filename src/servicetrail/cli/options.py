"""The parameters of the commands: their types, read by the same parsers as the API's, what
was typed and asked (for an access-log entry's filters), and a search built from them."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from ..domain.ids import BLANK, MAX_ID, InvalidValue, is_blank, whole_number
from ..domain.times import FROM_WORDS, TO_WORDS, parse_bound, parse_time
from ..domain.triggers import window_minutes
from .common import Failure

if TYPE_CHECKING:
    from ..domain.search import Search


class Parsed(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click
    """A parameter read by the same parser as the API's: its InvalidValue is click's usage
    error naming the parameter."""

    def __init__(self, name: str, parse: Callable[[str], Any]) -> None:
        self.name = name
        self.parse = parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):  # already converted (click converts defaults too)
            return value
        if ctx is not None and param is not None and param.name:
            ctx.meta.setdefault(AS_TYPED, {})[param.name] = value
        if is_blank(value):  # said alike for every option, as the API says it (review 47b)
            self.fail(BLANK, param, ctx)
        try:
            return self.parse(value)
        except InvalidValue as e:
            self.fail(str(e), param, ctx)


AS_TYPED = "servicetrail.as_typed"  # in a command's context: its parsed options as typed


def as_typed(param: str) -> str | None:
    """A parsed option's text as it was typed (an access-log entry's filters are as asked:
    `report own --from 2026-03-01` was logged as 2026-03-01T00:00:00Z; audit 25d)."""
    return click.get_current_context().meta.get(AS_TYPED, {}).get(param)


def count(text: str) -> int:
    """A count of 1 or more in the digits 0-9 (click's INT takes what int() does: '٣', '1_0')."""
    value = whole_number(text)  # its error names the value: click adds the option's name
    if value < 1:
        raise InvalidValue(f"{text} is not 1 or more")
    if value > MAX_ID:  # what a store's integer holds: past it, the driver's traceback (audit 23a)
        raise InvalidValue(f"{text} is over {MAX_ID}")
    return value


def event_id(text: str) -> int:
    """An event_id, 0 or more, in the digits 0-9 as the API's `after` (click's IntRange took
    ' 5', and said of ' ' that it was "not a valid integer range"; review 47j)."""
    value = whole_number(text)
    if value > MAX_ID:  # past what the store holds: OverflowError with a traceback (audit 21a)
        raise InvalidValue(f"{text} is over {MAX_ID}")
    return value


TIME = Parsed("TIME", parse_time)
# --from and --to in the API docs' words (domain.times), each as a sentence
FROM_HELP, TO_HELP = (f"{words[0].upper()}{words[1:]}." for words in (FROM_WORDS, TO_WORDS))
BOUND = Parsed("TIME", parse_bound)  # --from and --to, which part the stored times
COUNT = Parsed("N", count)
WINDOW = Parsed("MINUTES", window_minutes)
EVENT_ID = Parsed("EVENT_ID", event_id)
# a Party is looked up in the store, which says an unknown one; white space alone is blank,
# as the API's party_id (it was "unknown party ' '"; review 48e)
PARTY = Parsed("PARTY", str)


def as_asked(names: dict[str, str]) -> dict[str, Any]:
    """The options the command line gave, for an access-log entry's filters (SPEC section 8:
    "as asked"): `names` maps each entry key to the command's parameter. A default that was
    not typed was not asked (entries said `"scope": "all"` for a plain `records`)."""
    context = click.get_current_context()
    return {
        key: context.params[param]
        for key, param in names.items()
        if context.params.get(param) is not None
        and context.get_parameter_source(param) is not ParameterSource.DEFAULT
    }


def asked_as_typed(names: dict[str, str]) -> dict[str, Any]:
    """as_asked, each value as it was typed: the API keeps its parameters' text, and the
    same read from the CLI logged `--window 60` as 60 (audit 54c)."""
    return {key: as_typed(names[key]) or value for key, value in as_asked(names).items()}


# the option that carries each field of a search
OPTION_OF = {
    "device_id": "--device",
    "request_id": "--request-id",
    "from": "--from",
    "to": "--to",
    "srv": "--srv",
    "kind": "--kind",
    "scope": "--scope",
}


def search_or_fail(**options: Any) -> Search:
    """A search from a command's options, read as the API reads its parameters; a value it
    refuses is named by its option, in click's words."""
    # the search's rules (the SRV catalogue, its patterns) only for the commands that search:
    # `accounts`, `tokens`, `load` and `watch` take a Party or a count, and imported them,
    # some 6 ms of a start's CPU (session 61)
    from ..domain.search import InvalidField, build_search

    try:
        return build_search(**options)
    except InvalidField as e:
        option = OPTION_OF.get(e.field, e.field)
        raise Failure(f"Invalid value for '{option}': {e.message}") from None
