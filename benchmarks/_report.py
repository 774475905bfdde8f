"""Writes one benchmark's results as a ``## <title>`` section of docs/benchmarks.md.

Every benchmark calls :func:`write_section`; sections of other benchmarks are left untouched, and
each section records the machine, the date and the command that produced it.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
HEADER = ("# Benchmarks\n\nEvery number here was measured by the command named in its section; "
          "rerun it to reproduce. `make bench` runs them all.\n")


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.node() or 'host'}: {os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, Python {platform.python_version()}"


def write_section(title: str, body: str, *, command: str | None = None,
                  machine_line: str | None = None, date: str | None = None) -> Path:
    """Replace (or append) the section ``## title`` of docs/benchmarks.md (``machine_line`` and
    ``date``: for results measured elsewhere, e.g. on a lent GPU machine; default this one, now)."""
    command = command or "python -m " + " ".join([Path(sys.argv[0]).parent.name] + sys.argv[1:])
    stamp = date or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = (f"## {title}\n\n- Machine: {machine_line or machine()}\n- Date: {stamp}\n"
               f"- Command: `{command}`\n\n"
               f"{body.strip()}\n")
    text = DOC.read_text() if DOC.exists() else HEADER
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)
    return DOC
