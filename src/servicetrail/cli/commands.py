"""Commands whose options are given once: click keeps an option's last value when it comes
twice, so `records --party NORTH ... --party SOUTH` read SOUTH's records as if that were all
that was asked. The API refuses a parameter given twice (422); so does the command line, as
an error naming it (exit 2). Options meant to repeat (`multiple`, `count`) and flags
are left alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from .common import Failure


def _refuse_repeated_options(command: click.Command, ctx: click.Context, args: list[str]) -> None:
    # a parse that only reads: its third part lists each parameter every time it was met
    _, _, met = command.make_parser(ctx).parse_args(args=list(args))
    seen: set[str | None] = set()
    for param in met:
        if not isinstance(param, click.Option) or param.multiple or param.count or param.is_flag:
            continue
        if param.name in seen:
            raise Failure(f"option {'/'.join(param.opts)} is given more than once")
        seen.add(param.name)


class OnceOnly(click.Command):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        _refuse_repeated_options(self, ctx, args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        # the command as PostgreSQL shows its connections: `servicetrail serve (pid 4242)`.
        # Imported here: the group's --help imports no store, nor SQLAlchemy
        from ..store.engine import name_this_process

        name_this_process(" ".join(["servicetrail", *ctx.command_path.split()[1:]]))
        return super().invoke(ctx)


class OnceOnlyGroup(click.Group):
    command_class = OnceOnly
    group_class = type  # a group's groups are of its own class

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        _refuse_repeated_options(self, ctx, args)
        return super().parse_args(ctx, args)


def command(name: str, **attrs: Any) -> Callable[[Callable[..., Any]], OnceOnly]:
    return click.command(name, cls=OnceOnly, **attrs)


def group(name: str, **attrs: Any) -> Callable[[Callable[..., Any]], OnceOnlyGroup]:
    return click.group(name, cls=OnceOnlyGroup, **attrs)
