"""Work intake: JSON-lines work items from a spool directory or a stream (stdin).

Producers submit and walk away: they drop ``*.jsonl`` files into the spool directory (write to a
temporary name, then rename to ``*.jsonl``: other names are ignored) or pipe lines into stdin.
One line is one item::

    {"id": "a1", "prompt": [1, 15043, 29892], "max_new_tokens": 64, "priority": 0, "class": "chat"}

``id`` (non-empty string), ``prompt`` (non-empty list of non-negative ints: tokenisation is
upstream) and ``max_new_tokens`` (int >= 1) are required; ``priority`` (int) and ``class``
(string) are optional; other keys are an error. A malformed line, an item that cannot fit the
engine, or a repeated id goes to the dead-letter file with the reason; the run continues.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Set
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from fabric_hpc.errors import NotFoundError
from fabric_hpc.events import JsonLinesWriter, make_event
from fabric_hpc.inference.engine import EngineLimits

__all__ = ["DeadLetter", "IntakeRejection", "WorkItem", "parse_item", "read_items",
           "spool_files", "spool_lines", "stream_lines"]

_KEYS = frozenset({"id", "prompt", "max_new_tokens", "priority", "class"})


@dataclass(slots=True)
class WorkItem:
    """An admitted unit of work. ``cost`` = prompt + generation reserve, in tokens."""

    id: str
    prompt: list[int]
    max_new_tokens: int
    priority: int = 0
    klass: str = ""
    arrival: int = 0  # admission sequence number (aging)

    @property
    def length(self) -> int:
        return len(self.prompt)

    @property
    def cost(self) -> int:
        return len(self.prompt) + self.max_new_tokens


class IntakeRejection(ValueError):
    """A line that cannot become a work item; ``reason`` goes to the dead-letter file."""


def _check(obj: Any) -> WorkItem:
    if not isinstance(obj, dict):
        raise IntakeRejection(f"expected a JSON object, got {type(obj).__name__}")
    extra = obj.keys() - _KEYS
    if extra:
        raise IntakeRejection(f"unknown keys {sorted(extra)} (valid: {sorted(_KEYS)})")
    missing = [k for k in ("id", "prompt", "max_new_tokens") if k not in obj]
    if missing:
        raise IntakeRejection(f"missing required keys {missing}")
    rid, prompt, new = obj["id"], obj["prompt"], obj["max_new_tokens"]
    if not isinstance(rid, str) or not rid or len(rid) > 512 or "\n" in rid:
        raise IntakeRejection("id must be a non-empty string (at most 512 chars, no newline)")
    if not isinstance(prompt, list) or not prompt:
        raise IntakeRejection("prompt must be a non-empty list of token ids")
    if not all(type(t) is int and t >= 0 for t in prompt):
        raise IntakeRejection("prompt token ids must be non-negative integers")
    if type(new) is not int or new < 1:
        raise IntakeRejection("max_new_tokens must be an integer >= 1")
    prio, klass = obj.get("priority", 0), obj.get("class", "")
    if type(prio) is not int:
        raise IntakeRejection("priority must be an integer")
    if not isinstance(klass, str):
        raise IntakeRejection("class must be a string")
    return WorkItem(rid, prompt, new, prio, klass)


def parse_item(line: str | bytes, limits: EngineLimits | None = None) -> WorkItem:
    """Parse one line into a :class:`WorkItem` or raise :class:`IntakeRejection` with a reason."""
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IntakeRejection(f"not valid JSON ({exc})") from None
    item = _check(obj)
    if limits is not None:
        if item.length > limits.max_input_len:
            raise IntakeRejection(
                f"prompt has {item.length} tokens; engine max_input_len is {limits.max_input_len}")
        if item.cost > limits.max_seq_len:
            raise IntakeRejection(f"prompt + max_new_tokens = {item.cost} exceeds engine "
                                  f"max_seq_len {limits.max_seq_len}")
        if item.length > limits.max_num_tokens or item.cost > limits.kv_capacity_tokens:
            raise IntakeRejection(f"item needs {item.length} prefill / {item.cost} KV tokens; the "
                                  f"engine allows {limits.max_num_tokens} / "
                                  f"{limits.kv_capacity_tokens}")
    return item


class DeadLetter:
    """Append-only, fsync'd file of rejected lines: ``{source, line, reason, raw}``."""

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = Path(path) if path else None
        self._writer: JsonLinesWriter | None = None
        self.count = 0

    def reject(self, source: str, lineno: int, reason: str, raw: str | bytes) -> None:
        self.count += 1
        if self.path is None:
            return
        if self._writer is None:
            self._writer = JsonLinesWriter(self.path)
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        self._writer.write(make_event("dead_letter", source=source, line=lineno, reason=reason,
                                      raw=text[:2000]))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def spool_files(spool: str | os.PathLike[str]) -> list[Path]:
    """The ``*.jsonl`` files of a spool directory (or the one file given), in name order."""
    path = Path(spool)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise NotFoundError(f"input spool {path} does not exist",
                            hint="give a directory of *.jsonl files, a .jsonl file, or '-' for stdin")
    return sorted(p for p in path.iterdir() if p.suffix == ".jsonl" and p.is_file())


def spool_lines(spool: str | os.PathLike[str]) -> Iterator[tuple[str, int, bytes]]:
    """``(source, line number, raw line)`` for every non-blank line of the spool, in order."""
    for path in spool_files(spool):
        with path.open("rb") as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    yield path.name, n, line


def stream_lines(stream: IO[bytes] | IO[str], source: str = "<stdin>"
                 ) -> Iterator[tuple[str, int, bytes | str]]:
    for n, line in enumerate(stream, 1):
        if line.strip():
            yield source, n, line


def read_items(lines: Iterable[tuple[str, int, bytes | str]], *, limits: EngineLimits | None,
               dead_letter: DeadLetter | None, skip: Set[str] = frozenset()
               ) -> Iterator[WorkItem]:
    """Valid, first-seen items from ``lines`` whose ids are not in ``skip`` (finished in an
    earlier attempt); the rest go to ``dead_letter`` with the reason."""
    seen: set[str] = set()
    for source, n, raw in lines:
        try:
            item = parse_item(raw, limits)
            if item.id in seen:
                raise IntakeRejection(f"duplicate id {item.id!r} (first occurrence kept)")
        except IntakeRejection as exc:
            if dead_letter is not None:
                dead_letter.reject(source, n, str(exc), raw)
            continue
        seen.add(item.id)
        if item.id not in skip:
            yield item
