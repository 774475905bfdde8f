"""Text prompts: the engine's model directory's ``tokenizer.json`` encodes them and decodes the output.

A Hugging Face model directory holds its tokenizer as ``tokenizer.json`` (the ``tokenizers``
library's format, what ``save_pretrained`` writes for a fast tokenizer) beside
``tokenizer_config.json``. :class:`PromptTokenizer` reads both when the first text prompt is
encoded, importing ``tokenizers`` (installed with transformers, the ``torch`` extra) only then: a
run whose prompts are all token ids never reads them. Encoding adds the
special tokens the tokenizer's post-processor adds, with BOS/EOS as ``tokenizer_config.json``'s
``add_bos_token``/``add_eos_token`` say where it sets them -- what ``AutoTokenizer.encode(text)``
gives and vLLM sends the model by default. Decoding skips special tokens (vLLM's default).

Without ``tokenizer.json``, without the library, or with a file the library cannot read, a text
prompt is refused with a reason naming what is wrong (:meth:`PromptTokenizer.encode` raises
``IntakeRejection``). Where the run recorded the tokenizer its text prompts were encoded with
(``expect``), another one, or none, is a :class:`~fabric_hpc.errors.ConfigError` instead.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fabric_hpc.atomic import write_atomic
from fabric_hpc.errors import ConfigError, FabricError
from fabric_hpc.inference.intake import IntakeRejection
from fabric_hpc.inference.mpi import MpiContext
from fabric_hpc.inputs import os_error, read_bytes, read_json

__all__ = ["TOKENIZER_FILE", "PromptTokenizer", "record_tokenizer", "recorded_tokenizer",
           "same_tokenizer_everywhere", "tokenizer_for_run"]

TOKENIZER_FILE = "tokenizer.json"
_CONFIG_FILE = "tokenizer_config.json"
#: The largest tokenizer_config.json read (the largest seen are tens of KB; chat templates included).
MAX_CONFIG_BYTES = 16 << 20
_NO_LIBRARY = "the tokenizers library is not installed on this node"


class PromptTokenizer:
    """The text encoder of one engine directory, read on first use (:meth:`load`): ``available``
    (it has a usable tokenizer), ``identity`` (then a SHA-256 of its tokenizer.json and
    tokenizer_config.json, else None), ``missing`` (else why not). ``refused``: every text prompt is
    refused with that reason, nothing read. ``expect``: the identity the run recorded; loading
    another, or none, raises ConfigError ``"HEAD; WHAT NOW: TAIL"`` with ``mismatch``'s (head, tail,
    hint) (the hint: to install the library where that is what is missing).
    ``on_load(identity)``: called once a tokenizer is read."""

    def __init__(self, engine_dir: str | os.PathLike[str], *, refused: str | None = None,
                 expect: str | None = None, mismatch: tuple[str, str, str] = ("", "", ""),
                 on_load: Callable[[str], None] | None = None) -> None:
        self.dir = Path(engine_dir)
        self.refused, self.expect, self.mismatch, self.on_load = refused, expect, mismatch, on_load
        self.used = False  # a text prompt asked for an encoding
        self._loaded = False
        self._tok: Any = None
        self._identity: str | None = None
        self._missing, self._fix = "", ""
        self._bos: tuple[bool | None, int | None] = (None, None)
        self._eos: tuple[bool | None, int | None] = (None, None)

    def load(self) -> None:
        """Read the tokenizer (once): ``available``/``identity`` or ``missing`` say what came of it;
        ConfigError where it differs from ``expect``."""
        if self._loaded:
            return
        self._loaded = True
        self._read()
        if self.expect is not None and self._identity != self.expect:
            now = (f"the engine's model directory now has tokenizer sha256 {self._identity[:12]}"
                   if self._identity else self._missing)
            head, tail, hint = self.mismatch
            raise ConfigError(f"{head}; {now}: {tail}",
                              hint=self._fix if self._missing.startswith(_NO_LIBRARY) else hint)
        if self._identity is not None and self.on_load is not None:
            self.on_load(self._identity)

    def _read(self) -> None:
        path = self.dir / TOKENIZER_FILE
        if not path.is_file():
            self._missing = f"the engine's model directory {str(self.dir)[:200]!r} has no {TOKENIZER_FILE}"
            self._fix = ("put the model's tokenizer there "
                         "(AutoTokenizer.from_pretrained(MODEL).save_pretrained(DIR))")
            return
        try:
            from tokenizers import Tokenizer
        except ImportError:
            self._missing = f"{_NO_LIBRARY} (to read {str(path)[:200]})"
            self._fix = "pip install 'fabric-hpc[torch]' (transformers brings it)"
            return
        digest = hashlib.sha256()
        try:
            data = read_bytes(path, what="tokenizer file")  # a regular file of at most 256 MiB
            digest.update(data)
            tok = Tokenizer.from_buffer(data)
        except FabricError:
            raise
        except Exception as exc:  # noqa: BLE001 - tokenizers raises its own Exception for any bad file
            self._missing = (f"{str(path)[:200]}: not a tokenizer the tokenizers library reads "
                             f"({str(exc)[:150]})")
            self._fix = "re-save the model's tokenizer with save_pretrained"
            return
        config = self._read_config(digest)
        if config is None:
            return
        self._tok, self._identity = tok, digest.hexdigest()
        self._bos = (_flag(config, "add_bos_token"), self._token_id(config.get("bos_token")))
        self._eos = (_flag(config, "add_eos_token"), self._token_id(config.get("eos_token")))

    @property
    def identity(self) -> str | None:
        self.load()
        return self._identity

    @property
    def missing(self) -> str:
        self.load()
        return self._missing

    @property
    def encoded_with(self) -> str | None:
        """The identity of the tokenizer that encoded a text prompt, None before one was (nothing read)."""
        return self._identity if self.used else None

    def state(self) -> str | None:
        """What this rank encodes text prompts with, to compare across ranks: None before any text
        prompt, else ``tokenizer sha256 ...`` or why it cannot."""
        if not self.used:
            return None
        return f"tokenizer sha256 {self._identity[:16]}" if self._identity else self.refused or self._missing

    @property
    def available(self) -> bool:
        self.load()
        return self._tok is not None

    def _read_config(self, digest: Any) -> dict[str, Any] | None:
        """tokenizer_config.json (``{}`` where there is none), added to ``digest``; None where it
        cannot be read (``missing`` says why)."""
        path = self.dir / _CONFIG_FILE
        if not path.is_file():
            return {}
        try:
            data = read_bytes(path, what="tokenizer config", limit=MAX_CONFIG_BYTES)
            digest.update(b"\0" + data)
            doc = json.loads(data.decode("utf-8"))
        except FabricError as exc:
            self._missing = f"{str(path)[:200]}: {exc.message[:200]}"
            self._fix = exc.hint or "re-save the model's tokenizer with save_pretrained"
            return None
        except (ValueError, RecursionError) as exc:
            self._missing = f"{str(path)[:200]}: not readable JSON ({str(exc)[:150]})"
            self._fix = "re-save the model's tokenizer with save_pretrained"
            return None
        return doc if isinstance(doc, dict) else {}

    def _token_id(self, token: Any) -> int | None:
        """The id of a ``bos_token``/``eos_token`` entry (a string, or an AddedToken's dict)."""
        if isinstance(token, dict):
            token = token.get("content")
        return self._tok.token_to_id(token) if isinstance(token, str) else None

    def encode(self, text: str) -> list[int]:
        """``text``'s token ids (special tokens as the module doc says)."""
        self.used = True
        if self.refused is not None:
            raise IntakeRejection(self.refused)
        if not self.available:
            raise IntakeRejection(f"prompt is text but {self._missing}, so it cannot be encoded: "
                                  f"{self._fix}, or give prompt as a list of token ids")
        enc = self._tok.encode(text, add_special_tokens=True)
        ids, special = list(enc.ids), list(enc.special_tokens_mask)
        add, bos = self._bos
        if bos is not None and add is not None:
            has = bool(ids) and ids[0] == bos and special[0] == 1
            if add and not has:
                ids, special = [bos, *ids], [1, *special]
            elif not add and has:
                ids, special = ids[1:], special[1:]
        add, eos = self._eos
        if eos is not None and add is not None:
            has = bool(ids) and ids[-1] == eos and special[-1] == 1
            if add and not has:
                ids.append(eos)
            elif not add and has:
                ids.pop()
        return ids

    def decode(self, ids: list[int]) -> str:
        """Generated token ids as text, special tokens left out (a text prompt's result: the
        tokenizer that encoded it is read)."""
        if not self.available:
            raise ConfigError(f"cannot decode: {self._missing}", hint=self._fix)
        return str(self._tok.decode(ids, skip_special_tokens=True))


def recorded_tokenizer(path: Path, old: Any) -> dict[str, Any]:
    """run.json's ``tokenizer`` as ``{"tokenizer": identity}`` (None: no text prompt encoded yet),
    ``{}`` where run.json has none (a run begun before text prompts were read)."""
    if not isinstance(old, dict) or "tokenizer" not in old:
        return {}
    if old["tokenizer"] is not None and not isinstance(old["tokenizer"], str):
        raise ConfigError(f"{path}: bad tokenizer {str(old['tokenizer'])[:80]!r}",
                          hint="the output directory is damaged; rerun into a new --output directory")
    return {"tokenizer": old["tokenizer"]}


def tokenizer_for_run(out: Path, engine_dir: str, recorded: dict[str, Any],
                   on_load: Callable[[str], None] | None = None) -> PromptTokenizer:
    """The tokenizer this run encodes text prompts with (``recorded``: :func:`recorded_tokenizer`):
    none for a run begun before text prompts were read (its text items are refused, as merge
    expects no result for them); the recorded one where text prompts were encoded (another, or
    none, is a ConfigError: the weights' identity leaves tokenizer files out,
    :mod:`.weights`); else the directory's, ``on_load`` once it is read."""
    if not recorded:
        return PromptTokenizer(engine_dir, refused=(
            "prompt is text, and this run was begun by a fabric release that read no text prompts "
            "(its run.json records no tokenizer): run text prompts into a new --output directory"))
    ident = recorded["tokenizer"]
    if ident is None:
        return PromptTokenizer(engine_dir, on_load=on_load)
    return PromptTokenizer(engine_dir, expect=ident, mismatch=(
        f"{out} holds a run that encoded text prompts with tokenizer sha256 {ident[:12]}",
        "cannot resume it (its text prompts must be encoded as its committed results were)",
        "put the run's tokenizer files back, or use a new --output directory"))


def record_tokenizer(out: Path, identity: str) -> None:
    """Rank 0, once the first text prompt was encoded (before its result can be committed):
    run.json records the tokenizer's identity, which a resume or merge then checks. A failure is
    a FabricError: it fails the run (intake dead-letters any other error as the item's)."""
    path = out / "run.json"
    doc = read_json(path, what="run file", limit=16 << 20)
    if "tokenizer" in doc and doc["tokenizer"] is None:  # not a run.json of before text prompts
        try:
            write_atomic(path, json.dumps({**doc, "tokenizer": identity}, indent=2).encode())
        except OSError as exc:
            raise os_error(exc, "run file") from None


def same_tokenizer_everywhere(ctx: MpiContext, tok: PromptTokenizer) -> None:
    """After every rank costed the snapshot: ConfigError on every rank where the ranks encoded its
    text prompts differently (node-local model copies, the library on some nodes only): each
    would accept other items, or cost them otherwise, and share out another list."""
    ctx.rendezvous()  # a rank that failed while costing never reaches the allgather
    states = ctx.allgather((tok.state(), os.uname().nodename))
    if len({state for state, _ in states}) <= 1:
        return
    shown = "; ".join(f"rank {r} on {node}: {state or 'no text prompt'}"[:300]
                      for r, (state, node) in enumerate(states[:8]))
    raise ConfigError(f"ranks encode text prompts differently ({shown}{'; ...' if len(states) > 8 else ''}): "
                      "they would share out different items",
                      hint="give every node the same model directory (tokenizer.json, tokenizer_config.json) "
                           "and the tokenizers library (pip install 'fabric-hpc[torch]')")


def _flag(config: dict[str, Any], key: str) -> bool | None:
    value = config.get(key)
    return value if isinstance(value, bool) else None
