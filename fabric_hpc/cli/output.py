"""Rendering helpers shared by every command: ``--json`` or a rich table, never both."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from fabric_hpc.events import _default

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table."
)


def console(stderr: bool = False) -> Console:
    """A rich console on stdout (or stderr), plain when not a terminal."""
    return Console(file=sys.stderr if stderr else sys.stdout, highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, default=_default, indent=2, sort_keys=False))


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    t = Table(title=title, title_justify="left", show_lines=False)
    for col in columns:
        t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    return t


def render(as_json: bool, data: Any, human: Callable[[Console], None]) -> None:
    """Print ``data`` as JSON when ``--json`` was given, else call ``human(console)``."""
    if as_json:
        print_json(data)
    else:
        human(console())
