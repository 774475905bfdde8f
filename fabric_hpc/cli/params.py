"""Click parameter types shared by the command groups."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import click


class FiniteFloat(click.ParamType):
    """A float that is finite (no ``nan``/``inf``) and inside ``(lo, hi]`` / ``[lo, hi]``."""

    name = "number"

    def __init__(self, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False) -> None:
        self.lo, self.hi, self.lo_open = lo, hi, lo_open

    def _range(self) -> str:
        parts = []
        if self.lo is not None:
            parts.append(f"{'>' if self.lo_open else '≥'} {self.lo:g}")
        if self.hi is not None:
            parts.append(f"≤ {self.hi:g}")
        return " and ".join(parts)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            x = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        low_bad = self.lo is not None and (x <= self.lo if self.lo_open else x < self.lo)
        if not math.isfinite(x) or low_bad or (self.hi is not None and x > self.hi):
            rng = self._range()
            self.fail(f"{value!r} must be a finite number{' ' + rng if rng else ''}", param, ctx)
        return x


class OutputDir(click.ParamType):
    """A directory to write into: it may be created, but its parent must already be a directory
    (nothing is created on a typo), and the path itself must be absent or a directory.
    ``parents=True``: the command creates the missing parents too (``fabric sim demo``'s own
    ``demo-out/sim``); the name must still not be empty or a file."""

    name = "directory"

    def __init__(self, *, parents: bool = False) -> None:
        self.parents = parents

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path:
        from fabric_hpc.errors import ConfigError  # exit code 3, as output_path's
        from fabric_hpc.inputs import output_path

        what = param.opts[0] if isinstance(param, click.Option) else param.human_readable_name if param else "output"
        if not str(value):  # Path("") is ".": the files would land in the current directory
            raise ConfigError(f"{what} is an empty name",
                              hint="give a directory name (. for the current one)")
        path = Path(value)
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{what} {str(value)!r} exists and is not a directory",
                              hint="give a new or existing directory")
        if self.parents:  # the nearest existing directory above must be one (not a file)
            above = next((a for a in path.absolute().parents if os.path.lexists(a)), None)
            if above is not None and not above.is_dir():
                raise ConfigError(f"{what} {str(value)!r}: {str(above)!r} is not a directory",
                                  hint="give a path whose directories exist or can be created")
        elif not path.absolute().parent.is_dir():
            # output_path's message: a file where a directory is needed, or the missing directory
            output_path(path.absolute(), what=what)
        return path


class InputFile(click.ParamType):
    """A file to read, checked by the input boundary (fabric_hpc/inputs.py) instead of click: a
    directory, FIFO or device where a file belongs is one line and exit 3 (click's ``dir_okay=False``
    made a directory a usage error, exit 2). A missing path is passed on: the reader names its fix.
    ``what``: the file's name in the message, as its reader names it (default: the option)."""

    name = "file"

    def __init__(self, *, path_type: type = str, what: str | None = None) -> None:
        self.path_type, self.what = path_type, what

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from fabric_hpc.inputs import check_path

        what = self.what or (param.opts[0] if isinstance(param, click.Option) else
                             param.human_readable_name if param else "file")
        if os.path.exists(value):  # follows symlinks, as the readers do
            check_path(value, kind="file", what=what)
        return self.path_type(value)


class OutputFile(InputFile):
    """A file to write: an existing directory, FIFO or device at the path is refused as
    :class:`InputFile` refuses it (one line, exit 3; click's ``dir_okay=False`` made a directory exit
    2); a new path is passed on."""

    name = "file"
