"""Work intake: JSON-lines work items from a spool directory or a stream (stdin).

Producers submit and walk away: they drop ``*.jsonl`` files into the spool directory (write to a
temporary name, then rename to ``*.jsonl``: other names are ignored) or pipe lines into stdin.
One line is one item::

    {"id": "a1", "prompt": [1, 15043, 29892], "max_new_tokens": 64, "priority": 0, "class": "chat"}

``id`` (non-empty string), ``prompt`` (non-empty list of non-negative ints, or text where the
engine's model directory has a ``tokenizer.json``: :mod:`fabric_hpc.inference.tokenizer`) and
``max_new_tokens`` (int >= 1) are required; ``priority`` (int) and ``class`` (string) are optional;
other keys are an error. vLLM's names and the OpenAI batch line for ``/v1/completions``
(``custom_id``, ``body.prompt``, ``body.max_tokens``) are read as the same. A text prompt is at most
``MAX_TEXT_BYTES`` of UTF-8; its encoding is checked like a list of ids. Token ids are below
2**31, ``max_new_tokens`` and ``|priority|`` at most 2**31, a line at most ``MAX_LINE_BYTES``.
Anything that cannot become an item -- a malformed line, any exception while parsing or checking
it (deep nesting, huge numbers, wrong types), an item that cannot fit the engine, a repeated id --
goes to the dead-letter file with a reason of at most ``MAX_REASON_CHARS`` characters; the run
continues.

Reading the spool and the stream, and the snapshot a run reads, are in :mod:`fabric_hpc.inference.spool`.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from array import array
from collections.abc import Iterable, Iterator, Set
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fabric_hpc.errors import ConfigError, FabricError
from fabric_hpc.events import JsonLinesWriter, make_event
from fabric_hpc.inference.engine import EngineLimits
from fabric_hpc.inference.spool import MAX_LINE_BYTES, _Overlong
from fabric_hpc.inputs import key_given_twice

if TYPE_CHECKING:
    from fabric_hpc.inference.tokenizer import PromptTokenizer

__all__ = ["DeadLetter", "InputChanged", "IntakeRejection", "WorkItem", "changed_error", "item_digest",
           "parse_item", "read_items"]

_KEYS = frozenset({"id", "prompt", "max_new_tokens", "priority", "class"})
# vLLM's names for the same things (``SamplingParams.max_tokens``, ``TokensPrompt.prompt_token_ids``)
ALIASES = {"max_tokens": "max_new_tokens", "prompt_token_ids": "prompt"}
_TEXT_PROMPT = ("prompt is text, and this reader has no tokenizer to encode it: give prompt as a list of "
                "token ids, or serve a model directory that holds its tokenizer.json")
_OPENAI_KEYS = frozenset({"custom_id", "method", "url", "body"})
_OPENAI_BODY = frozenset({"model", "prompt", "max_tokens"})
MAX_INT = 2**31
#: a text prompt's limit in bytes of UTF-8 (far above any engine's max_input_len in tokens)
MAX_TEXT_BYTES = 1 << 20
MAX_REASON_CHARS = 500


@dataclass(slots=True)
class WorkItem:
    """An admitted unit of work. ``cost`` = prompt + generation reserve, in tokens."""

    id: str
    prompt: list[int]
    max_new_tokens: int
    priority: int = 0
    klass: str = ""
    arrival: int = 0  # admission sequence number (aging)
    # timings on the rank's monotonic clock (time.perf_counter; 0.0: not reached yet), set by the
    # pipeline and scheduler; written as the result's ``metrics`` (pipeline.request_times)
    t_admitted: float = 0.0    # passed the token budget (vLLM: arrival_time)
    t_scheduled: float = 0.0   # handed to the engine (engine.add; vLLM: first_scheduled_time)
    t_first_token: float = 0.0  # end of the first engine step after that (vLLM: first_token_time)
    t_finished: float = 0.0    # end of the step that returned its result (vLLM: finished_time)
    text: str | None = None  # a text prompt as given (``prompt``: its encoding); its result gets text

    @property
    def length(self) -> int:
        return len(self.prompt)

    @property
    def cost(self) -> int:
        return len(self.prompt) + self.max_new_tokens


def item_digest(item: WorkItem) -> str:
    """What a result depends on -- the prompt's token ids, or a text prompt's text (its encoding
    depends on the tokenizer, which the run's weights identity covers), and max_new_tokens -- as 16
    hex digits (journalled beside each id, so a resumed run sees an item changed under the same id)."""
    if item.text is not None:
        h = hashlib.blake2b(b"text\0" + item.text.encode("utf-8"), digest_size=8)
    else:
        h = hashlib.blake2b(array("I", item.prompt).tobytes(), digest_size=8)
    h.update(item.max_new_tokens.to_bytes(8, "little"))
    return h.hexdigest()


class InputChanged(ConfigError):
    """An item whose result an earlier attempt committed has changed under the same id."""


class IntakeRejection(ValueError):
    """A line that cannot become a work item; ``reason`` goes to the dead-letter file."""


def _check_utf8(key: str, text: str) -> None:
    """JSON's ``\\ud800`` escapes can spell a lone surrogate, which no UTF-8 file can hold."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise IntakeRejection(f"{key} is not valid Unicode: a lone surrogate {text[exc.start]!r} at "
                              f"character {exc.start} (an escape like \\ud800 without its pair)") from None


def _check(obj: Any) -> WorkItem:
    if not isinstance(obj, dict):
        raise IntakeRejection(f"expected a JSON object, got {type(obj).__name__}")
    if "custom_id" in obj:
        obj = _from_openai(obj)
    elif not obj.keys().isdisjoint(ALIASES):
        obj = _unalias(obj)
    extra = obj.keys() - _KEYS
    if extra:
        raise IntakeRejection(f"unknown keys {sorted(extra)} (valid: {sorted(_KEYS)}, or vLLM's "
                              f"{', '.join(f'{a} for {k}' for a, k in ALIASES.items())})")
    missing = [k for k in ("id", "prompt", "max_new_tokens") if k not in obj]
    if missing:
        raise IntakeRejection(f"missing required keys {missing}")
    rid, prompt, new = obj["id"], obj["prompt"], obj["max_new_tokens"]
    if not isinstance(rid, str) or not rid or len(rid) > 512 or "\n" in rid:
        raise IntakeRejection("id must be a non-empty string (at most 512 chars, no newline)")
    _check_utf8("id", rid)
    if isinstance(prompt, str):
        _check_text(prompt)
    elif not isinstance(prompt, list) or not prompt:
        raise IntakeRejection("prompt must be a non-empty list of token ids")
    elif all(isinstance(t, str) for t in prompt):
        raise IntakeRejection("prompt is a list of texts: give one text per item (each with its own id)")
    elif not all(type(t) is int and 0 <= t < MAX_INT for t in prompt):
        raise IntakeRejection(f"prompt token ids must be non-negative integers below {MAX_INT}")
    if type(new) is not int or not 1 <= new <= MAX_INT:
        raise IntakeRejection(f"max_new_tokens must be an integer in 1..{MAX_INT}")
    prio, klass = obj.get("priority", 0), obj.get("class", "")
    if type(prio) is not int or abs(prio) > MAX_INT:
        raise IntakeRejection(f"priority must be an integer in -{MAX_INT}..{MAX_INT}")
    if not isinstance(klass, str) or len(klass) > 512:
        raise IntakeRejection("class must be a string (at most 512 chars)")
    _check_utf8("class", klass)
    if isinstance(prompt, str):
        return WorkItem(rid, [], new, prio, klass, text=prompt)
    return WorkItem(rid, prompt, new, prio, klass)


def _check_text(prompt: str) -> None:
    if not prompt:
        raise IntakeRejection("prompt is empty text: give the text to complete (or a list of token ids)")
    if len(prompt) > MAX_TEXT_BYTES:  # a character is at least a byte: no encoding needed to know
        raise IntakeRejection(f"prompt text has {len(prompt):,} characters; the limit is {MAX_TEXT_BYTES:,} "
                              f"bytes of UTF-8")
    _check_utf8("prompt", prompt)
    size = len(prompt.encode("utf-8"))
    if size > MAX_TEXT_BYTES:
        raise IntakeRejection(f"prompt text is {size:,} bytes of UTF-8; the limit is {MAX_TEXT_BYTES:,}")


def _from_openai(obj: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI batch line (``{"custom_id", "method": "POST", "url": "/v1/completions", "body":
    {"model", "prompt", "max_tokens"}}``, as vLLM's run_batch reads) as an item: custom_id is its id."""
    extra = obj.keys() - _OPENAI_KEYS
    if extra:
        raise IntakeRejection(f"unknown keys {sorted(extra)[:10]} in an OpenAI batch line (valid: "
                              f"{sorted(_OPENAI_KEYS)})")
    if obj.get("method", "POST") != "POST" or obj.get("url") != "/v1/completions":
        raise IntakeRejection(f"an OpenAI batch line must be method 'POST', url '/v1/completions' (got "
                              f"{str(obj.get('method', 'POST'))[:20]!r}, {str(obj.get('url'))[:40]!r}): chat "
                              "completions need a chat template, which the harness does not apply")
    if not isinstance(obj["custom_id"], str):
        raise IntakeRejection("custom_id must be a non-empty string (at most 512 chars, no newline)")
    body = obj.get("body")
    if not isinstance(body, dict):
        raise IntakeRejection("an OpenAI batch line needs a body object with prompt and max_tokens")
    extra = body.keys() - _OPENAI_BODY
    if extra:
        raise IntakeRejection(f"body keys {sorted(extra)[:10]} are not supported (valid: "
                              f"{sorted(_OPENAI_BODY)}): the harness decodes greedily, with no sampling "
                              "options")
    missing = [k for k in ("prompt", "max_tokens") if k not in body]
    if missing:  # named as the line names them (max_tokens has no default of 16 here)
        raise IntakeRejection(f"an OpenAI batch line's body is missing required keys {missing}")
    return {"id": obj["custom_id"], "prompt": body["prompt"], "max_new_tokens": body["max_tokens"]}


def _unalias(obj: dict[str, Any]) -> dict[str, Any]:
    """vLLM's field names renamed to ours (an item that gives both spellings is refused)."""
    out = dict(obj)
    for alias, key in ALIASES.items():
        if alias in out:
            if key in out:
                raise IntakeRejection(f"both {key!r} and its vLLM name {alias!r} are given: keep one")
            out[key] = out.pop(alias)
    return out


def _one_of_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook``: a key given twice is refused (``json`` keeps the last silently).
    The rule of ``fabric_hpc.inputs.load_json``, without its whole-document depth walk, which
    would triple the cost of parsing an item with a long prompt."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        twice = key_given_twice(pairs)
        raise IntakeRejection(f"key {twice[:80]!r} appears twice in one object "
                              "(JSON would keep only the last)")
    return obj


def _utf8(raw: bytes) -> str:
    """A line's text: work items are UTF-8 (a UTF-8 byte-order mark is allowed). json.loads would
    guess UTF-16/32 from a BOM or NUL bytes and fail with a codec error that names neither."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise IntakeRejection("not UTF-8 (starts with a UTF-16 byte-order mark): save the file as UTF-8")
    if b"\x00" in raw:
        raise IntakeRejection("not UTF-8 text (it holds NUL bytes: UTF-16 or UTF-32?): "
                              "save the file as UTF-8")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IntakeRejection(f"not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}: "
                              f"{exc.reason}): save the file as UTF-8") from None


def parse_item(line: str | bytes, limits: EngineLimits | None = None,
               vocab_size: int | None = None, tokenizer: PromptTokenizer | None = None) -> WorkItem:
    """Parse one line into a :class:`WorkItem` or raise :class:`IntakeRejection` with a reason
    (``vocab_size``: the engine's, where it refuses prompt token ids at or above it; ``tokenizer``:
    the engine directory's, which encodes a text prompt or says why it cannot)."""
    if isinstance(line, _Overlong):  # whatever its first bytes parse as
        raise IntakeRejection(f"line longer than {MAX_LINE_BYTES} bytes (the limit of one work item)")
    if isinstance(line, bytes):
        line = _utf8(line)
    try:
        obj = json.loads(line, object_pairs_hook=_one_of_each)
    except (ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, IntakeRejection):
            raise
        if "int_max_str_digits" in str(exc):  # Python's guard against slow int parsing
            raise IntakeRejection(f"a number has more than {sys.get_int_max_str_digits():,} digits (token "
                                  f"ids are below {MAX_INT}, max_new_tokens at most {MAX_INT})") from None
        raise IntakeRejection(f"not valid JSON ({exc})") from None
    item = _check(obj)
    if item.text is not None:
        if tokenizer is None:
            raise IntakeRejection(_TEXT_PROMPT)
        item.prompt = tokenizer.encode(item.text)
        if not item.prompt:
            raise IntakeRejection("prompt text encodes to no tokens: give text the tokenizer encodes")
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
    if vocab_size is not None:
        bad = next((t for t in item.prompt if not 0 <= t < vocab_size), None)
        if bad is not None:
            fix = ("the model directory's tokenizer.json is not this model's" if item.text is not None
                   else "tokenise with the served model's own tokenizer")
            raise IntakeRejection(f"prompt token id {bad} is outside the engine's vocabulary "
                                  f"(0..{vocab_size - 1}): {fix}")
    return item


class DeadLetter:
    """Append-only, fsync'd file of rejected lines: ``{source, line, reason, raw}``. ``count`` counts
    them; ``skipped`` the valid lines :func:`read_items` passed over as committed by an earlier attempt
    (this input's resumed items, not every id the journal holds)."""

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = Path(path) if path else None
        self._writer: JsonLinesWriter | None = None
        self.count = 0
        self.skipped = 0

    def reject(self, source: str, lineno: int, reason: str, raw: str | bytes) -> None:
        self.count += 1
        reason = reason if len(reason) <= MAX_REASON_CHARS else reason[:MAX_REASON_CHARS - 3] + "..."
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


def changed_error(changed: list[tuple[str, str, int]], *, merging: bool = False) -> InputChanged:
    """The InputChanged naming ``changed`` (``(id, source, line)`` of items the input holds only with
    other content than their committed result was computed from)."""
    shown = ", ".join(f"{rid[:100]!r} ({source}:{line})" for rid, source, line in changed[:10])
    more = f" and {len(changed) - 10} more" if len(changed) > 10 else ""
    if len(changed) == 1 and not merging:
        rid, source, line = changed[0]
        head = f"item {rid[:100]!r} ({source}:{line}) changed"
    else:
        head = f"{len(changed)} item{'s' if len(changed) > 1 else ''} changed ({shown}{more})"
    effect = ("merging would pair their old results with the new prompts" if merging
              else "resuming would keep the old result")
    return InputChanged(
        f"{head} since an earlier attempt committed {'its result' if len(changed) == 1 else 'their results'} "
        f"(the prompt or max_new_tokens differ): {effect}",
        hint="run the changed input into a new --output directory (or give changed items new ids, or "
             "put the original lines back" + (")" if merging else " to resume)"))


def read_items(lines: Iterable[tuple[str, int, bytes | str]], *, limits: EngineLimits | None,
               dead_letter: DeadLetter | None, skip: Set[str] = frozenset(), vocab_size: int | None = None,
               done_too: bool = False, changed: list[tuple[str, str, int]] | None = None,
               tokenizer: PromptTokenizer | None = None) -> Iterator[WorkItem]:
    """Valid, first-seen items from ``lines`` whose ids are not in ``skip`` (finished in an
    earlier attempt; ``done_too``: those too, as merge lists them); the rest go to ``dead_letter``
    with the reason (:func:`parse_item`). An id in ``skip`` with a journalled digest (``skip.digests``,
    as :func:`~fabric_hpc.inference.journal.committed_ids` gives) is kept where a line holds the
    content its result was computed from; its lines with other content are repeats of it, dead-lettered
    (a new spool file that reuses the id). Where no line holds that content any more (the line was
    edited), the end of the input raises :class:`InputChanged` naming the first such item, or, with
    ``changed``, appends ``(id, source, line)`` of each there instead. A FabricError while encoding
    (the run's recorded tokenizer is not the one here: ``PromptTokenizer.expect``) is raised, not
    dead-lettered: no item is at fault."""
    seen: dict[str, tuple[str, int]] = {}  # id -> where its kept copy is
    digests = getattr(skip, "digests", None) or {}
    held: dict[str, list[tuple[str, int, bytes | str]]] = {}  # committed id, other content: repeat or edit?
    for source, n, raw in lines:
        try:
            item = parse_item(raw, limits, vocab_size, tokenizer)
            if item.id in seen:
                where = "{}:{}".format(*seen[item.id])
                raise IntakeRejection(_repeat(item.id, where, item.id in skip, item.id in digests))
            if digests.get(item.id, None) not in (None, item_digest(item)):
                held.setdefault(item.id, []).append((source, n, raw))
                continue
        except IntakeRejection as exc:
            if dead_letter is not None:
                dead_letter.reject(source, n, str(exc), raw)
            continue
        except FabricError:  # not the item's fault: the run's tokenizer changed (PromptTokenizer.expect)
            raise
        except Exception as exc:  # noqa: BLE001 - RecursionError etc.: one bad item never stops a run
            if dead_letter is not None:
                dead_letter.reject(source, n, f"cannot parse the item ({type(exc).__name__}: "
                                   f"{str(exc)[:200]})", raw)
            continue
        seen[item.id] = (source, n)
        for held_source, held_n, held_raw in held.pop(item.id, ()):  # the committed line is still here:
            if dead_letter is not None:                                 # those were repeats of it
                dead_letter.reject(held_source, held_n, _repeat(item.id, f"{source}:{n}", True), held_raw)
        if done_too or item.id not in skip:
            yield item
        elif dead_letter is not None:
            dead_letter.skipped += 1
    found = [(rid, source, n) for rid, lines_of in held.items() for source, n, _ in lines_of[:1]]
    if found and changed is not None:
        changed.extend(found)
    elif found:
        raise changed_error(found[:1])


def _repeat(rid: str, where: str, committed: bool, known: bool = True) -> str:
    """The dead-letter reason of a repeated id (``where``: the kept copy; for a ``committed`` id,
    the line its result was computed from where the journal's digest tells it: ``known``)."""
    if committed and known:
        return (f"duplicate id {rid[:100]!r} (a result for it was committed by an earlier attempt and is "
                f"kept, computed from {where}; no other copy of it in the input runs)")
    if committed:
        return (f"duplicate id {rid[:100]!r} (a result for it was committed by an earlier attempt and is "
                f"kept; no copy of it in the input runs again)")
    return f"duplicate id {rid[:100]!r} (first occurrence kept: {where})"
