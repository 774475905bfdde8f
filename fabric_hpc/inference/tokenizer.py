"""Text prompts: the engine's model directory's ``tokenizer.json`` encodes them and decodes the output.

A Hugging Face model directory holds its tokenizer as ``tokenizer.json`` (the ``tokenizers``
library's format, what ``save_pretrained`` writes for a fast tokenizer) beside
``tokenizer_config.json``. :class:`PromptTokenizer` reads both, importing ``tokenizers`` (installed
with transformers, the ``torch`` extra) only when ``tokenizer.json`` is there. Encoding adds the
special tokens the tokenizer's post-processor adds, with BOS/EOS as ``tokenizer_config.json``'s
``add_bos_token``/``add_eos_token`` say where it sets them -- what ``AutoTokenizer.encode(text)``
gives and vLLM sends the model by default. Decoding skips special tokens (vLLM's default).

Without ``tokenizer.json`` (or without the library) a text prompt is refused with a reason naming
what is missing (:meth:`PromptTokenizer.encode` raises ``IntakeRejection``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from fabric_hpc.errors import ConfigError
from fabric_hpc.inference.intake import IntakeRejection
from fabric_hpc.inputs import os_error

__all__ = ["TOKENIZER_FILE", "PromptTokenizer"]

TOKENIZER_FILE = "tokenizer.json"
_CONFIG_FILE = "tokenizer_config.json"


class PromptTokenizer:
    """The text encoder of one engine directory (``available``: it has a usable tokenizer;
    ``identity``: then a SHA-256 of its tokenizer.json and tokenizer_config.json, else None)."""

    def __init__(self, engine_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(engine_dir)
        self._tok: Any = None
        self.identity: str | None = None
        self._bos: tuple[bool | None, int | None] = (None, None)
        self._eos: tuple[bool | None, int | None] = (None, None)
        path = self.dir / TOKENIZER_FILE
        self.missing = (f"the engine's model directory {str(self.dir)[:200]!r} has no {TOKENIZER_FILE}, so "
                        "a text prompt cannot be encoded: put the model's tokenizer there "
                        "(AutoTokenizer.from_pretrained(MODEL).save_pretrained(DIR)), or give prompt as a "
                        "list of token ids")
        if not path.is_file():
            return
        try:
            from tokenizers import Tokenizer
        except ImportError:
            self.missing = (f"{path} is there but the tokenizers library is not installed on this node: "
                            "pip install 'fabric-hpc[torch]' (transformers brings it), or give prompt as "
                            "a list of token ids")
            return
        digest = hashlib.sha256()
        try:
            data = path.read_bytes()
            digest.update(data)
            self._tok = Tokenizer.from_buffer(data)
        except OSError as exc:
            raise os_error(exc, "tokenizer file") from None
        except Exception as exc:  # noqa: BLE001 - tokenizers raises its own Exception for any bad file
            raise ConfigError(f"{path}: not a tokenizer the tokenizers library reads "
                              f"({str(exc)[:200]})",
                              hint="re-save the model's tokenizer with save_pretrained, or remove the "
                                   "file and send token ids") from None
        config = self._read_config(digest)
        self.identity = digest.hexdigest()
        self._bos = (_flag(config, "add_bos_token"), self._token_id(config.get("bos_token")))
        self._eos = (_flag(config, "add_eos_token"), self._token_id(config.get("eos_token")))

    @property
    def available(self) -> bool:
        return self._tok is not None

    def _read_config(self, digest: Any) -> dict[str, Any]:
        path = self.dir / _CONFIG_FILE
        if not path.is_file():
            return {}
        try:
            data = path.read_bytes()
            digest.update(b"\0" + data)
            doc = json.loads(data.decode("utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: not readable JSON ({str(exc)[:200]})",
                              hint="re-save the tokenizer with save_pretrained") from None
        return doc if isinstance(doc, dict) else {}

    def _token_id(self, token: Any) -> int | None:
        """The id of a ``bos_token``/``eos_token`` entry (a string, or an AddedToken's dict)."""
        if isinstance(token, dict):
            token = token.get("content")
        return self._tok.token_to_id(token) if isinstance(token, str) else None

    def encode(self, text: str) -> list[int]:
        """``text``'s token ids (special tokens as the module doc says)."""
        if self._tok is None:
            raise IntakeRejection(f"prompt is text but {self.missing}")
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
        """Generated token ids as text, special tokens left out."""
        return str(self._tok.decode(ids, skip_special_tokens=True))


def _flag(config: dict[str, Any], key: str) -> bool | None:
    value = config.get(key)
    return value if isinstance(value, bool) else None
