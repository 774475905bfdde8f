"""Rendering helpers shared by every command: ``--json`` or a rich table, never both.

``--json`` output is always strict JSON (RFC 8259): a value that is not a finite number
(``NaN``, ``Infinity`` -- a metric undefined for an empty set, say) is written as ``null``; the
paths of such values are listed under ``"undefined"`` in a top-level object and named in a note
on stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from fabric_hpc.events import _default, finite_json

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table."
)


def console(stderr: bool = False) -> Console:
    """A rich console on stdout (or stderr), plain when not a terminal. Markup is off: names
    and messages come from files and Slurm, and ``[/bold]`` in a fabric's name is text."""
    return Console(file=sys.stderr if stderr else sys.stdout, highlight=False, soft_wrap=True, markup=False)


def dumps_json(data: Any) -> tuple[str, list[str]]:
    """``data`` as strict, indented JSON, and the paths of the non-finite numbers set to null."""
    plain = json.loads(json.dumps(data, default=_default))  # numpy, paths, sets -> JSON types
    undefined: list[str] = []
    clean = finite_json(plain, "", undefined)
    if undefined and isinstance(clean, dict) and "undefined" not in clean:
        clean["undefined"] = undefined
    return json.dumps(clean, indent=2, sort_keys=False, allow_nan=False), undefined


#: Whether this invocation wrote a JSON document to stdout (the error handler then adds none).
JSON_WRITTEN = [False]


def print_json(data: Any) -> None:
    text, undefined = dumps_json(data)
    click.echo(text)
    JSON_WRITTEN[0] = True
    if undefined:
        shown = ", ".join(undefined[:10]) + (" ..." if len(undefined) > 10 else "")
        click.echo(f"note: {len(undefined)} value(s) undefined (NaN or infinite), written as null: "
                   f"{shown}", err=True)


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    t = Table(title=title, title_justify="left", show_lines=False)
    for col in columns:
        t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    return t


#: a listing with more rows than this is printed as a :class:`PlainTable`: rich lays out every cell of
#: a Table (``fabric ckpt show`` of 20,000 tensors: ~14 s of CPU, a plain listing 0.1 s)
PLAIN_ROWS = 2000


class PlainTable:
    """Rows as left-aligned columns two spaces apart under a header line, not wrapped to the
    terminal (a long name makes a long line): for listings of thousands of rows."""

    def __init__(self, columns: Sequence[str], rows: Iterable[Sequence[Any]]):
        cells = [list(columns), *(["" if v is None else str(v) for v in row] for row in rows)]
        widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
        self.lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]

    def __rich_console__(self, console: Console, options: Any) -> Iterator[Any]:
        from rich.segment import Segment
        for line in self.lines:
            yield Segment(line)
            yield Segment.line()


def render(as_json: bool, data: Any, human: Callable[[Console], None]) -> None:
    """Print ``data`` as JSON when ``--json`` was given, else call ``human(console)``."""
    if as_json:
        print_json(data)
    else:
        human(console())
