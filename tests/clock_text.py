"""How ``fabric slurm why`` shows a time, written out for the tests: the time of day when it is today, with
its date on another day (a test run across midnight saw a reserved start of 00:03 shown with its date)."""

from __future__ import annotations

import datetime as dt


def shown(ts: float) -> str:
    when = dt.datetime.fromtimestamp(ts)
    return when.strftime("%H:%M:%S" if when.date() == dt.date.today() else "%Y-%m-%d %H:%M:%S")
