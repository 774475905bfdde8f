"""The engine contract: what the harness needs from a continuous-batching inference engine.

The harness (intake, admission, lanes, journal) is engine-agnostic. An engine is anything that
satisfies :class:`Engine`, a small step-function interface in the style of vLLM's v1 scheduler:

* ``limits`` -- static :class:`EngineLimits`, read once; the harness sizes its token budget and
  batches from them and never asks the engine for more than they allow.
* ``add(requests)`` -- hand the engine new sequences (already admitted against ``limits``); the
  engine prefills them in its next :meth:`Engine.step`. The requests of one ``add`` call are
  drawn from one shape lane, so an engine that pads a prefill group pads very little.
* ``step()`` -- run one engine iteration (prefill of newly added sequences plus one decode token
  for every running one); return the sequences that finished in it. Blocking; called from one
  executor thread only; no asyncio anywhere on this path.
* ``active()`` -- number of sequences the engine holds (added, not yet returned).
* ``close()`` -- release devices and memory; idempotent.

Engines are *built from* an :class:`EngineConfig`: exactly nine required fields, no defaults,
unknown keys rejected, and each field checked against the engine artefact on disk (see
:func:`load_engine_config` and ``docs/inference.md``). Engine kinds register a factory and an
artefact reader with :func:`register_engine`; the simulated engine registers itself, the
PyTorch and TensorRT-LLM engines register theirs the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import Field

from fabric_hpc.errors import ConfigError, NotFoundError, require_whole
from fabric_hpc.validation import StrictModel, parse_model

__all__ = [
    "ARTEFACT_FIELDS",
    "Engine",
    "EngineConfig",
    "EngineConfigError",
    "EngineLimits",
    "EngineRequest",
    "EngineResult",
    "build_engine",
    "check_add",
    "artefact_kind",
    "check_against_artefact",
    "load_engine_config",
    "read_trtllm_artefact",
    "register_engine",
]


class EngineConfigError(ConfigError):
    """The engine config is malformed or does not match the engine artefact (exit code 3)."""


@dataclass(frozen=True, slots=True)
class EngineLimits:
    """Static capacity of an engine. The harness never exceeds any of these.

    * ``max_batch_size`` -- sequences the engine may hold at once (``active() <= this``).
    * ``max_num_tokens`` -- tokens one ``step`` may process (new prompt tokens of sequences added
      since the last step plus one decode token per running sequence).
    * ``max_input_len`` -- longest prompt accepted.
    * ``max_seq_len`` -- longest prompt + generated tokens of one sequence.
    * ``kv_capacity_tokens`` -- KV-cache tokens: the sum over held sequences of
      ``len(prompt) + max_new_tokens`` (their full reservation) must stay within it.
    * ``best_batch_size`` -- the batch size at which the engine reaches its best throughput
      (defaults to ``max_batch_size``); lane choice aims to keep ``active()`` there.
    """

    max_batch_size: int
    max_num_tokens: int
    max_input_len: int
    max_seq_len: int
    kv_capacity_tokens: int
    best_batch_size: int = 0

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_num_tokens", "max_input_len", "max_seq_len",
                     "kv_capacity_tokens"):
            require_whole(getattr(self, name), f"EngineLimits.{name}", minimum=1, error=EngineConfigError)
        if self.best_batch_size:
            require_whole(self.best_batch_size, "EngineLimits.best_batch_size", minimum=1,
                          error=EngineConfigError)
        if self.max_input_len > self.max_seq_len:
            raise EngineConfigError(f"EngineLimits.max_input_len {self.max_input_len} is above max_seq_len "
                                    f"{self.max_seq_len}: no prompt that long could be generated from",
                                    hint="max_input_len must be at most max_seq_len")
        if not self.best_batch_size:
            object.__setattr__(self, "best_batch_size", self.max_batch_size)


@dataclass(frozen=True, slots=True)
class EngineRequest:
    """One sequence to generate: caller id, prompt token ids, generation budget."""

    id: str
    prompt: Sequence[int]
    max_new_tokens: int

    @property
    def reserve_tokens(self) -> int:
        """KV tokens this sequence may occupy at its longest (prompt + generation reserve)."""
        return len(self.prompt) + self.max_new_tokens


@dataclass(frozen=True, slots=True)
class EngineResult:
    """A finished sequence: its id, generated token ids and why it stopped."""

    id: str
    tokens: list[int]
    finish_reason: Literal["length", "stop"] = "length"
    meta: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Engine(Protocol):
    """A continuous-batching engine driven by one blocking executor thread.

    Contract (checked for every implementation by :class:`fabric_hpc.inference.testing.
    EngineContractTests`):

    1. ``add`` raises :class:`~fabric_hpc.errors.ConfigError` (and adds nothing) when the batch
       would exceed ``limits`` (batch size, KV capacity, ``max_input_len``, ``max_seq_len``) or
       an id is already held; ``add([])`` is a no-op.
    2. ``step`` with nothing active returns ``[]`` promptly.
    3. every added request is returned by some later ``step`` exactly once, with
       ``1 <= len(tokens) <= max_new_tokens``; ``active()`` counts held requests.
    4. results depend only on the request (same id + prompt + max_new_tokens -> same tokens), so
       a rerun after a crash reproduces them.
    5. ``close`` is idempotent; after it, ``add``/``step`` raise.
    """

    @property
    def limits(self) -> EngineLimits: ...

    def add(self, requests: Sequence[EngineRequest]) -> None: ...

    def step(self) -> list[EngineResult]: ...

    def active(self) -> int: ...

    def close(self) -> None: ...


@runtime_checkable
class KnowsVocabulary(Protocol):
    """An engine with a vocabulary: prompt token ids must be below ``vocab_size`` (the PyTorch
    engine refuses others at ``add``; the simulated engine draws its tokens from it). The harness
    sends an item with another id to the dead letters at intake, like an item too long for
    ``limits``, instead of failing the whole run when the engine refuses it."""

    @property
    def vocab_size(self) -> int: ...


def check_add(limits: EngineLimits, requests: Sequence[EngineRequest], held: Collection[str], *,
              closed: bool, reserved_tokens: int | None = None) -> None:
    """Contract rule 1 for ``Engine.add``: raise :class:`ConfigError` (so the engine adds nothing)
    when the engine is closed, an id repeats or is already held, or the batch would exceed
    ``limits``. ``reserved_tokens`` (KV tokens already reserved) enables the KV-capacity check."""
    if closed:
        raise ConfigError("engine is closed")
    ids = {r.id for r in requests}
    if len(ids) != len(requests) or any(i in held for i in ids):
        raise ConfigError("engine.add: duplicate request id")
    if len(held) + len(requests) > limits.max_batch_size:
        raise ConfigError(f"engine.add: batch would exceed max_batch_size {limits.max_batch_size}")
    if reserved_tokens is not None and \
            reserved_tokens + sum(r.reserve_tokens for r in requests) > limits.kv_capacity_tokens:
        raise ConfigError(f"engine.add: KV reservation would exceed {limits.kv_capacity_tokens}")
    for r in requests:
        if not 1 <= len(r.prompt) <= limits.max_input_len or r.max_new_tokens < 1 \
                or r.reserve_tokens > limits.max_seq_len:
            raise ConfigError(f"engine.add: request {r.id!r} outside max_input_len/max_seq_len")


# --------------------------------------------------------------------------- configuration

ARTEFACT_FIELDS = ("architecture", "dtype", "max_batch_size", "max_input_len", "max_seq_len",
                   "max_num_tokens", "tensor_parallel_size")


class EngineConfig(StrictModel):
    """The nine required fields of an engine config (no defaults, unknown keys rejected).

    ``engine`` and ``engine_dir`` say what to load; the other seven restate what the artefact was
    built for and must equal what the artefact says, so a config written for one engine build
    never silently drives another (wrong dtype, smaller max batch, different parallelism).
    """

    engine: Literal["simulated", "pytorch", "tensorrt_llm"]
    engine_dir: str = Field(min_length=1)
    architecture: str = Field(min_length=1)
    dtype: Literal["float32", "float16", "bfloat16", "fp8"]
    max_batch_size: int = Field(ge=1)
    max_input_len: int = Field(ge=1)
    max_seq_len: int = Field(ge=2)
    max_num_tokens: int = Field(ge=1)
    tensor_parallel_size: int = Field(ge=1)


ArtefactReader = Callable[[Path], dict[str, Any]]
EngineFactory = Callable[..., Engine]
_REGISTRY: dict[str, tuple[ArtefactReader, EngineFactory | None]] = {}


def register_engine(kind: str, reader: ArtefactReader, factory: EngineFactory | None) -> None:
    """Register an engine kind: ``reader(engine_dir)`` returns the artefact's values for
    :data:`ARTEFACT_FIELDS`; ``factory(config, **options)`` builds the engine."""
    _REGISTRY[kind] = (reader, factory)


def _registry(kind: str) -> tuple[ArtefactReader, EngineFactory | None]:
    if kind not in _REGISTRY:
        # engines register on import; import the built-in modules lazily
        import importlib

        module = {"simulated": "fabric_hpc.inference.simulated",
                  "pytorch": "fabric_hpc.inference.engines.pytorch",
                  "tensorrt_llm": "fabric_hpc.inference.engines.trtllm"}.get(kind)
        if module:
            with contextlib.suppress(ModuleNotFoundError):
                importlib.import_module(module)
    if kind not in _REGISTRY:
        if kind == "tensorrt_llm":
            _REGISTRY[kind] = (read_trtllm_artefact, None)
        else:
            raise EngineConfigError(f"engine kind {kind!r} is not available in this installation",
                                    hint=f"registered kinds: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[kind]


#: Largest engine-directory JSON file (config.json, fabric_engine.json) read; real ones are a few KB.
MAX_ARTEFACT_JSON = 16 << 20


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise NotFoundError(f"engine artefact {path} does not exist",
                            hint="engine_dir must point at the built engine directory")
    from fabric_hpc.inputs import read_json
    try:  # at most MAX_ARTEFACT_JSON bytes, UTF-8, 64 levels deep: an error naming the file
        data = read_json(path, what="engine artefact", limit=MAX_ARTEFACT_JSON)
    except ConfigError as exc:
        raise EngineConfigError(f"not readable JSON: {exc.message}", hint=exc.hint) from None
    if not isinstance(data, dict):
        raise EngineConfigError(f"{path}: expected a JSON object")
    return data


def read_trtllm_artefact(engine_dir: Path) -> dict[str, Any]:
    """The nine-field view of a TensorRT-LLM engine directory's ``config.json``
    (``pretrained_config`` + ``build_config``, TensorRT-LLM >= 0.9 layout)."""
    data = _read_json(engine_dir / "config.json")
    pre = data.get("pretrained_config") or {}
    build = data.get("build_config") or {}
    mapping = pre.get("mapping") or {}
    return {
        "architecture": pre.get("architecture"),
        "dtype": pre.get("dtype"),
        "max_batch_size": build.get("max_batch_size"),
        "max_input_len": build.get("max_input_len"),
        "max_seq_len": build.get("max_seq_len"),
        "max_num_tokens": build.get("max_num_tokens"),
        "tensor_parallel_size": mapping.get("tp_size", 1),
    }


def artefact_kind(engine_dir: Path) -> str | None:
    """The kind of engine ``engine_dir`` holds, told by its files: ``"pytorch"`` (a prepared
    ``fabric_engine.json``), ``"simulated"`` or ``"tensorrt_llm"`` (``config.json`` with a
    ``simulated`` section, or a TensorRT-LLM build); None when it cannot be told."""
    if (engine_dir / "fabric_engine.json").is_file():
        return "pytorch"
    path = engine_dir / "config.json"
    try:
        if not path.is_file() or path.stat().st_size > 1 << 20:
            return None
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    if "simulated" in doc or str(doc.get("version", "")).startswith("fabric-simulated"):
        return "simulated"
    if isinstance(doc.get("pretrained_config"), dict) and isinstance(doc.get("build_config"), dict):
        return "tensorrt_llm"
    return None


def check_against_artefact(config: EngineConfig, artefact: Mapping[str, Any], *,
                           source: str) -> None:
    """Raise one :class:`EngineConfigError` naming every field that differs from the artefact."""
    bad = []
    for name in ARTEFACT_FIELDS:
        want, have = getattr(config, name), artefact.get(name)
        if have is None:
            bad.append(f"{name}: the artefact does not state it")
        elif want != have:
            bad.append(f"{name}: config says {want!r}, artefact {source} says {have!r}")
    if bad:
        raise EngineConfigError(
            f"engine config does not match the engine artefact {source}:\n  " + "\n  ".join(bad),
            hint="restate the values the engine was built with, or point engine_dir at the "
                 "engine built for this config")


def load_engine_config(data: Mapping[str, Any] | str | os.PathLike[str], *,
                       check_artefact: bool = True) -> EngineConfig:
    """Parse an engine config (a mapping, or a JSON/YAML file path) and check it against the
    artefact in ``engine_dir`` (relative paths resolve against the config file's directory)."""
    source, base = "engine config", Path.cwd()
    if not isinstance(data, Mapping):
        from fabric_hpc.inputs import check_path, load_json, load_yaml, read_text

        path = Path(data)
        if not path.exists():
            raise NotFoundError(f"engine config {path} does not exist")
        text = read_text(check_path(path, what="engine config"), what="engine config", limit=1 << 20)
        try:
            data = load_yaml(text, str(path))[0] if path.suffix in (".yaml", ".yml") else load_json(text, str(path))
        except ConfigError as exc:
            raise EngineConfigError(exc.message, hint=exc.hint) from None
        source, base = str(path), path.parent
    config = parse_model(EngineConfig, data, source=source,
                         hint="an engine config has exactly nine fields; see docs/inference.md")
    # one spelling per directory (a trailing slash, a symlink, `..`): run.json records and compares it
    config = config.model_copy(update={"engine_dir": str((base / Path(config.engine_dir)).resolve())})
    if check_artefact:
        found = artefact_kind(Path(config.engine_dir))
        if found is not None and found != config.engine:
            raise EngineConfigError(f"engine_dir {config.engine_dir} holds a {found} engine; the config "
                                    f"({source}) says engine {config.engine!r}",
                                    hint=f"set engine to {found!r}, or point engine_dir at a "
                                         f"{config.engine} engine")
        reader, _ = _registry(config.engine)
        check_against_artefact(config, reader(Path(config.engine_dir)),
                               source=str(config.engine_dir))
    return config


def build_engine(config: EngineConfig, **options: Any) -> Engine:
    """Build the engine a (checked) config names.

    Every factory accepts ``local_rank`` (the GPU index on this node: one engine per process,
    GPU chosen by local rank); other ``options`` are engine-specific run-time settings (e.g. the
    simulated engine's ``clock``), never capacity: capacity is the artefact's."""
    _, factory = _registry(config.engine)
    if factory is None:
        raise EngineConfigError(
            f"engine {config.engine!r} cannot run here: its runtime is not installed",
            hint="tensorrt_llm must import on this node (a site install); see docs/inference.md")
    check_options(config.engine, factory, options)
    return factory(config, **options)


def check_options(kind: str, factory: Callable[..., Any], options: Mapping[str, Any]) -> None:
    """ConfigError for an option ``factory`` does not take (with the valid ones and a did-you-mean),
    and for a non-bool value of an option annotated ``bool`` (``"no"`` is not false)."""
    import difflib
    import inspect

    every = list(inspect.signature(factory).parameters.values())[1:]  # after the config
    params = {p.name: p for p in every if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in every)
    valid = sorted(n for n in params if n != "local_rank")
    for name, value in options.items():
        if name not in params and not takes_any:
            close = difflib.get_close_matches(str(name), valid, n=1)
            raise ConfigError(f"engine option {name!r} is not an option of the {kind} engine"
                              + (f" (did you mean {close[0]!r}?)" if close else ""),
                              hint=f"its options: {', '.join(valid) or 'none'} (docs/engines.md)")
        if name in params and params[name].annotation in (bool, "bool") and not isinstance(value, bool):
            raise ConfigError(f"engine option {name!r} of the {kind} engine must be true or false, "
                              f"not {value!r}", hint=f"pass {name}=True or {name}=False")
