"""One file of per-job memory in the agent's state dir (``{"format": ..., "jobs": {id: entry}}``), shared by
:mod:`~fabric_hpc.slurm.deferral_store` and :mod:`~fabric_hpc.slurm.qos_store`: rewritten atomically
(:func:`fabric_hpc.atomic.write_atomic`, not fsync'd) only when it changed, read without blocking and never
through a symbolic link (a FIFO or link in its place is a reason to ignore it, not a hang). Each save records
its time by this host's clock (``saved``): on a shared file system the file's mtime is the server's clock."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from fabric_hpc.atomic import write_atomic
from fabric_hpc.errors import ConfigError
from fabric_hpc.events import open_regular


class JobsFile:
    """``path`` holding the jobs' entries of one ``fmt``; ``what`` names it in the reasons it is ignored."""

    def __init__(self, path: Path, fmt: str, what: str, max_bytes: int, older: tuple[str, ...] = ()) -> None:
        self.path, self.fmt, self.what, self.max_bytes = path, fmt, what, max_bytes
        self.older = older  # formats of earlier releases, read as they are (the caller knows what they lack)
        #: The format of the file the last :meth:`load` read (None: none read).
        self.read_format: str | None = None
        #: When the file the last :meth:`load` read was saved, by the saving host's clock (None: not said).
        self.saved: float | None = None
        self._last = ""

    def save(self, jobs: dict[str, Any]) -> None:
        """Rewrite the file when its entries changed since the last save (or load)."""
        text = json.dumps(jobs, separators=(",", ":"))
        if text != self._last:
            doc = json.dumps({"format": self.fmt, "saved": time.time()}, separators=(",", ":"))
            write_atomic(self.path, f'{doc[:-1]},"jobs":{text}}}', mode=0o640, durable=False)
            self._last = text

    def load(self) -> tuple[dict[str, Any], str | None]:
        """(the jobs' entries, None) when read, ({}, None) when there is no file, ({}, why) when it was
        ignored (not readable, too large, not JSON, not of this format nor an ``older`` one)."""
        self.read_format, self.saved = None, None
        try:
            with os.fdopen(open_regular(self.path, os.O_RDONLY), "rb") as fh:
                raw = fh.read(self.max_bytes + 1)
        except FileNotFoundError:
            return {}, None
        except ConfigError as exc:  # a FIFO, device or symbolic link in the state dir
            return {}, exc.message
        except OSError as exc:
            return {}, f"not readable: {exc.strerror or exc}"
        if len(raw) > self.max_bytes:
            return {}, f"larger than {self.max_bytes} bytes"
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            return {}, f"damaged: {type(exc).__name__}: {str(exc)[:200]}"
        ours = isinstance(doc, dict) and doc.get("format") in (self.fmt, *self.older) \
            and isinstance(doc.get("jobs"), dict)
        if not ours:
            return {}, f"not a fabric agent {self.what} file (format {self.fmt} expected)"
        self.read_format = doc["format"]
        saved = doc.get("saved")
        if isinstance(saved, (int, float)) and not isinstance(saved, bool) and math.isfinite(saved):
            self.saved = float(saved)
        self._last = json.dumps(doc["jobs"], separators=(",", ":")) if self.read_format == self.fmt else ""
        return doc["jobs"], None
