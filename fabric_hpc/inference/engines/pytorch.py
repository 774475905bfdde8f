"""The PyTorch reference engine: continuous batching over a Llama-style decoder.

Artefact (``engine_dir``): a Hugging Face Llama model directory -- ``config.json`` plus
``*.safetensors`` weights (as ``save_pretrained`` writes them) -- and ``fabric_engine.json``,
the build limits the engine is prepared with (:func:`prepare_pytorch_engine` writes it)::

    {"format": "fabric-pytorch-engine-1", "dtype": "bfloat16", "max_batch_size": 256,
     "max_input_len": 1024, "max_seq_len": 1280, "max_num_tokens": 8192,
     "tensor_parallel_size": 1, "weights": "safetensors"}      # or "weights": "random", "seed": 0

or, serving a fabric checkpoint step directly (``config.json`` then comes from the checkpoint)::

     "weights": "fabric-checkpoint",
     "checkpoint": {"path": "/ckpts/run1", "step": 1200, "prefix": "model", "naming": "huggingface"}

``fabric_engine.json`` is validated strictly (unknown or missing keys are errors). The nine-field
engine config is checked against it: ``architecture`` against ``config.json``'s
``architectures[0]``, the other six against ``fabric_engine.json``; a checkpoint's manifest is
checked too (step present, names/shapes/dtypes fit ``config.json``: :mod:`.ckpt_weights`).
``"weights": "random"`` builds seeded random weights of the ``config.json`` shape (benchmarks,
tests; no download is possible on CI machines).

torch is imported only when an engine is built or an artefact with weights is prepared.
"""

from __future__ import annotations

import functools
import heapq
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from fabric_hpc.errors import ConfigError, NotFoundError
from fabric_hpc.inference.engine import (
    EngineConfig,
    EngineLimits,
    EngineRequest,
    EngineResult,
    check_add,
    register_engine,
)
from fabric_hpc.inference.engines.spec import ARCHITECTURE, PRESETS, LlamaSpec
from fabric_hpc.validation import StrictModel, parse_model

__all__ = ["ENGINE_FILE", "EngineBuild", "TorchEngine", "prepare_pytorch_engine",
           "read_pytorch_artefact"]

ENGINE_FILE = "fabric_engine.json"
FORMAT = "fabric-pytorch-engine-1"
_LIMIT_KEYS = ("dtype", "max_batch_size", "max_input_len", "max_seq_len", "max_num_tokens",
               "tensor_parallel_size")
_DTYPES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise NotFoundError(f"{path} does not exist ({what})",
                            hint="prepare the directory with prepare_pytorch_engine(); see "
                                 "docs/engines.md")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return doc


class CheckpointWeights(StrictModel):
    """Where a ``fabric-checkpoint`` engine reads its weights (all four fields required)."""

    path: str = Field(min_length=1)
    step: int = Field(ge=0)
    prefix: str
    naming: Literal["huggingface", "megatron"]


class EngineBuild(StrictModel):
    """``fabric_engine.json``: the build limits and where the weights come from."""

    format: Literal["fabric-pytorch-engine-1"]
    dtype: Literal["float32", "float16", "bfloat16"]
    max_batch_size: int = Field(ge=1)
    max_input_len: int = Field(ge=1)
    max_seq_len: int = Field(ge=2)
    max_num_tokens: int = Field(ge=1)
    tensor_parallel_size: int = Field(ge=1)
    weights: Literal["safetensors", "random", "fabric-checkpoint"]
    seed: int | None = None
    preset: str | None = None
    checkpoint: CheckpointWeights | None = None

    @model_validator(mode="after")
    def _weights_fields(self) -> EngineBuild:
        if (self.weights == "fabric-checkpoint") != (self.checkpoint is not None):
            raise ValueError("'checkpoint' is required with weights: fabric-checkpoint, and only there")
        if (self.weights == "random") != (self.seed is not None) or \
                (self.preset is not None and self.weights != "random"):
            raise ValueError("'seed' (and optionally 'preset') go with weights: random, and only there")
        return self


def read_build(engine_dir: Path) -> EngineBuild:
    """``fabric_engine.json`` of ``engine_dir``, validated strictly."""
    path = Path(engine_dir) / ENGINE_FILE
    return parse_model(EngineBuild, _read_json(path, "the engine's build limits"), source=str(path),
                       hint="prepare the directory again with prepare_pytorch_engine(); see "
                            "docs/engines.md")


def _checkpoint_plan(engine_dir: Path, src: CheckpointWeights, spec: LlamaSpec) -> Any:
    """Open the checkpoint ``src`` names (manifest only) and plan its weights for ``spec``;
    the checkpoint's own config.json (when it carries one) must describe the same model."""
    from fabric_hpc.checkpoint import open_checkpoint
    from fabric_hpc.inference.engines.ckpt_weights import plan_weights

    ckpt = open_checkpoint(engine_dir / src.path, src.step)
    if ckpt.step != src.step:
        raise ConfigError(f"{ckpt.path} is step {ckpt.step}, {ENGINE_FILE} says {src.step}")
    carried = _carried_config(ckpt)
    if carried is not None and LlamaSpec.from_hf_config(carried, source=f"{ckpt.path} config.json") != spec:
        raise ConfigError(f"{engine_dir / 'config.json'} and the config.json carried by checkpoint "
                          f"{ckpt.path} describe different models",
                          hint="prepare the engine again from the checkpoint")
    return plan_weights(ckpt, spec, prefix=src.prefix, naming=src.naming)


def _carried_config(ckpt: Any) -> dict[str, Any] | None:
    files = ckpt.manifest.user_metadata.get("hf_files")
    doc = files.get("config.json") if isinstance(files, dict) else None
    return doc if isinstance(doc, dict) else None


def read_pytorch_artefact(engine_dir: Path) -> dict[str, Any]:
    """The nine-field view of a PyTorch engine directory (see the module docstring); a
    checkpoint it serves is checked against ``config.json`` from its manifest."""
    engine_dir = Path(engine_dir)
    if not engine_dir.is_dir():
        raise NotFoundError(f"engine directory {engine_dir} does not exist",
                            hint="engine_dir must point at a prepared model directory")
    model = _read_json(engine_dir / "config.json", "the model's Hugging Face config")
    build = read_build(engine_dir)
    if build.weights == "fabric-checkpoint":
        assert build.checkpoint is not None
        _checkpoint_plan(engine_dir, build.checkpoint,
                         LlamaSpec.from_hf_config(model, source=str(engine_dir / "config.json")))
    archs = model.get("architectures") or [None]
    return {"architecture": archs[0], **{k: getattr(build, k) for k in _LIMIT_KEYS}}


def prepare_pytorch_engine(engine_dir: str | Path, *, dtype: str, max_batch_size: int,
                           max_input_len: int, max_seq_len: int, max_num_tokens: int,
                           preset: str | None = None, seed: int = 0,
                           checkpoint: str | Path | None = None, step: int | None = None,
                           prefix: str | None = None) -> dict[str, Any]:
    """Write ``fabric_engine.json`` (and, with ``preset`` or ``checkpoint``, ``config.json``);
    return the matching nine-field engine config.

    Without ``preset``/``checkpoint`` the directory must already hold a Hugging Face Llama model
    (``config.json`` + ``*.safetensors``, e.g. from ``save_pretrained``). ``checkpoint`` (a
    fabric checkpoint root or step directory; ``step`` or latest, pinned here) serves that step
    directly: ``config.json`` is the one the checkpoint carries (``fabric ckpt import-hf``, or
    ``user_metadata.hf_files`` of a save), else one already in ``engine_dir``; ``prefix`` is the
    subtree holding the model (default: top level, else ``model``)."""
    path = Path(engine_dir)
    if dtype not in _DTYPES:
        raise ConfigError(f"dtype {dtype!r} is not supported by the PyTorch engine",
                          hint=f"one of {sorted(_DTYPES)}")
    if preset is not None and checkpoint is not None:
        raise ConfigError("give a preset (random weights) or a checkpoint, not both")
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown model preset {preset!r}", hint=f"one of {sorted(PRESETS)}")
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps(PRESETS[preset].hf_config(dtype), indent=2))
        weights: dict[str, Any] = {"weights": "random", "seed": seed, "preset": preset}
    elif checkpoint is not None:
        weights = _prepare_checkpoint(path, Path(checkpoint), step, prefix)
    else:
        spec_doc = _read_json(path / "config.json", "the model's Hugging Face config")
        LlamaSpec.from_hf_config(spec_doc, source=str(path / "config.json"))
        if not sorted(path.glob("*.safetensors")):
            raise ConfigError(f"{path} holds no *.safetensors weights",
                              hint="save the model with save_pretrained(dir) (safetensors), or "
                                   "pass preset= for random weights")
        weights = {"weights": "safetensors"}
    if (path / "config.json").is_file():  # refused here, not at the first run
        spec = LlamaSpec.from_hf_config(_read_json(path / "config.json", "the model's Hugging Face config"))
        if max_seq_len > spec.max_position_embeddings:
            raise ConfigError(f"max_seq_len {max_seq_len} exceeds the model's max_position_embeddings "
                              f"{spec.max_position_embeddings}", hint="ask for a shorter max_seq_len")
    doc = {"format": FORMAT, "dtype": dtype, "max_batch_size": max_batch_size,
           "max_input_len": max_input_len, "max_seq_len": max_seq_len,
           "max_num_tokens": max_num_tokens, "tensor_parallel_size": 1, **weights}
    parse_model(EngineBuild, doc, source=str(path / ENGINE_FILE))
    tmp = path / (ENGINE_FILE + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    tmp.replace(path / ENGINE_FILE)
    return {"engine": "pytorch", "engine_dir": str(path), "architecture": ARCHITECTURE,
            "dtype": dtype, "max_batch_size": max_batch_size, "max_input_len": max_input_len,
            "max_seq_len": max_seq_len, "max_num_tokens": max_num_tokens,
            "tensor_parallel_size": 1}


def _prepare_checkpoint(path: Path, checkpoint: Path, step: int | None,
                        prefix: str | None) -> dict[str, Any]:
    """The ``weights`` part of fabric_engine.json for a checkpoint step (checked now)."""
    from fabric_hpc.checkpoint import open_checkpoint
    from fabric_hpc.inference.engines.ckpt_weights import detect_naming, subtree_names

    ckpt = open_checkpoint(checkpoint, step)
    if not ckpt.path.name.startswith("step-"):
        raise ConfigError(f"{ckpt.path} is not a committed step directory of a checkpoint root",
                          hint="point at the checkpoint root (and --step) or at ROOT/step-NNNNNNNNNN")
    config = _carried_config(ckpt)
    path.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (path / "config.json").write_text(json.dumps(config, indent=2))
    elif not (path / "config.json").is_file():
        raise ConfigError(f"checkpoint {ckpt.path} carries no config.json and {path} has none",
                          hint="put the model's Hugging Face config.json into the engine directory, "
                               "or save the checkpoint with metadata={'hf_files': {'config.json': ...}}")
    spec = LlamaSpec.from_hf_config(_read_json(path / "config.json", "model config"),
                                    source=str(path / "config.json"))
    if prefix is None:  # top level, else the subtree `model` (a save of {"model": ...})
        prefix = next((p for p in ("", "model") if detect_naming(subtree_names(ckpt, p))), "")
    prefix = prefix.strip("/")
    src = {"path": str(ckpt.path.parent.resolve()), "step": ckpt.step, "prefix": prefix,
           "naming": detect_naming(subtree_names(ckpt, prefix)) or "huggingface"}
    # names, shapes, dtypes: refused now, not later on every rank
    _checkpoint_plan(path, CheckpointWeights(**src), spec)
    return {"weights": "fabric-checkpoint", "checkpoint": src}


def _load_tensors(engine_dir: Path, device: Any) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    files = sorted(engine_dir.glob("*.safetensors"))
    if not files:
        raise ConfigError(f"{engine_dir} holds no *.safetensors weights",
                          hint="fabric_engine.json says weights: safetensors; save the model "
                               "with save_pretrained(dir), or prepare it with preset=")
    tensors: dict[str, Any] = {}
    for f in files:
        try:
            tensors.update(load_file(str(f), device=str(device)))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ConfigError(f"{f}: not a readable safetensors file ({exc})",
                              hint="re-save the weights with save_pretrained") from None
    return tensors


def _pick_device(local_rank: int, device: str | None) -> Any:
    import torch

    if device:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def build_pytorch_engine(config: EngineConfig, *, local_rank: int = 0, device: str | None = None,
                         stop_at_eos: bool = True, compile_decode: bool = False,
                         cuda_graphs: bool = True, sdpa_cudnn: bool = False) -> TorchEngine:
    """The ``pytorch`` engine factory (see :func:`fabric_hpc.inference.engine.build_engine`).

    ``device``: ``cpu``/``cuda:N`` (default: GPU ``local_rank`` modulo the GPUs visible, so
    several ranks may share one GPU; CPU without CUDA). ``stop_at_eos``: finish a sequence at the
    model's EOS token (off for benchmarks that need exact output lengths). ``compile_decode``:
    ``torch.compile`` the decode pass (meant for GPUs; compiling takes a while).
    ``cuda_graphs``: on a CUDA device, replay captured decode passes (:mod:`.decode_graphs`;
    checked against the eager pass when built, eager if capture fails); ignored on the CPU and
    with ``compile_decode``. ``sdpa_cudnn``: let torch's attention use its cuDNN backend (off by
    default: torch >= 2.10 prefers it on Hopper and Blackwell once its cuDNN is >= 9.15, and it
    builds a cuDNN graph for every new shape, while almost every prefill pass has a new one)."""
    import torch

    from fabric_hpc.inference.engines.torch_llama import LlamaModel, check_memory

    engine_dir = Path(config.engine_dir)
    build = read_build(engine_dir)
    spec = LlamaSpec.from_hf_config(_read_json(engine_dir / "config.json", "model config"),
                                    source=str(engine_dir / "config.json"))
    if config.tensor_parallel_size != 1:
        raise ConfigError("the PyTorch engine runs one GPU per engine (tensor_parallel_size 1)",
                          hint="run one rank per GPU instead (mpiexec/srun)")
    if config.dtype not in _DTYPES:
        raise ConfigError(f"dtype {config.dtype!r} is not supported by the PyTorch engine")
    if config.max_seq_len > spec.max_position_embeddings:
        raise ConfigError(f"max_seq_len {config.max_seq_len} exceeds the model's "
                          f"max_position_embeddings {spec.max_position_embeddings}")
    dev = _pick_device(local_rank, device)
    dtype = getattr(torch, config.dtype)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    check_memory(spec, config.max_batch_size, config.max_seq_len, dtype, dev)
    if build.weights == "random":
        model = LlamaModel.random(spec, int(build.seed or 0), device=dev, dtype=dtype)
    elif build.weights == "safetensors":
        model = LlamaModel(spec, _load_tensors(engine_dir, dev), device=dev, dtype=dtype,
                           source=f"weights in {engine_dir}")
    else:
        from fabric_hpc.inference.engines.ckpt_weights import load_weights

        # this rank's part of the engine's tensor-parallel world (TP 1: whole tensors, every
        # chunk's CRC-32C checked as it is read)
        assert build.checkpoint is not None
        tensors = load_weights(_checkpoint_plan(engine_dir, build.checkpoint, spec), rank=0,
                               world_size=config.tensor_parallel_size)
        model = LlamaModel(spec, tensors, device=dev, dtype=dtype,
                           source=f"checkpoint {build.checkpoint.path} step {build.checkpoint.step}")
    limits = EngineLimits(config.max_batch_size, config.max_num_tokens, config.max_input_len,
                          config.max_seq_len, config.max_batch_size * config.max_seq_len)
    return TorchEngine(model, limits, stop_at_eos=stop_at_eos, compile_decode=compile_decode,
                       cuda_graphs=cuda_graphs, sdpa_cudnn=sdpa_cudnn)


class _Seq:
    __slots__ = ("req", "slot", "tokens")

    def __init__(self, req: EngineRequest, slot: int) -> None:
        self.req, self.slot, self.tokens = req, slot, []


class TorchEngine:
    """Continuous batching over :class:`~.torch_llama.LlamaModel` with a slot KV cache.

    One ``step``: a decode pass for every sequence that was running before it (one token each),
    then a prefill pass per group added since the last step (its first token). Finished
    sequences free their slot at once; new ones take the lowest free slots. Greedy decoding.
    On CUDA the decode pass is a captured graph (``cuda_graphs``; ``graph_stats`` says how it
    was built, or why the eager pass is used). Attention never uses torch's cuDNN backend
    unless ``sdpa_cudnn`` (see :func:`build_pytorch_engine`)."""

    def __init__(self, model: Any, limits: EngineLimits, *, stop_at_eos: bool = True,
                 compile_decode: bool = False, cuda_graphs: bool = True,
                 sdpa_cudnn: bool = False) -> None:
        import contextlib

        import torch
        from torch.nn.attention import SDPBackend, sdpa_kernel

        from fabric_hpc.inference.engines.torch_llama import KVCache

        self.model, self._limits, self.torch = model, limits, torch
        self.device = model.device
        self.cache = KVCache(model.spec, limits.max_batch_size, limits.max_seq_len,
                             device=model.device, dtype=model.dtype)
        self.eos = model.spec.eos_token_id if stop_at_eos else None
        self._free = list(range(limits.max_batch_size))
        self._rows: list[_Seq | None] = [None] * limits.max_batch_size
        self._held: dict[str, _Seq] = {}
        self._pending: list[list[_Seq]] = []
        self._closed = False
        self._decode = model.decode
        # the backends every pass may use (applied around a whole step and the graph capture)
        self._attention = (contextlib.nullcontext if sdpa_cudnn else functools.partial(
            sdpa_kernel, [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                          SDPBackend.MATH]))
        if compile_decode:
            self._decode = torch.compile(model.decode, dynamic=True)
        self._graphs: Any = None
        self.graph_stats: dict[str, Any] | None = None
        if cuda_graphs and not compile_decode and self.device.type == "cuda":
            self._graphs = self._capture()
        self.steps = self.decode_rows = self.prefill_slots = 0
        # host seconds spent issuing the decode and prefill passes, and waiting for the step's
        # tokens (the GPU's share when launches are not the bottleneck)
        self.host_s = {"decode": 0.0, "prefill": 0.0, "wait": 0.0}

    def _capture(self) -> Any:
        from fabric_hpc.events import emit
        from fabric_hpc.inference.engines.decode_graphs import DecodeGraphs

        with self._attention():
            graphs = DecodeGraphs(self.model, self.cache, self._limits.max_batch_size)
        self.graph_stats = graphs.stats()
        emit("infer.engine.decode_graphs", device=str(self.device), **self.graph_stats)
        return graphs if graphs.ready else None

    @property
    def limits(self) -> EngineLimits:
        return self._limits

    def active(self) -> int:
        return len(self._held)

    def add(self, requests: Sequence[EngineRequest]) -> None:
        check_add(self._limits, requests, self._held, closed=self._closed)
        if not requests:
            return
        for r in requests:
            if any(not 0 <= t < self.model.spec.vocab_size for t in r.prompt):
                raise ConfigError(f"engine.add: request {r.id!r} has token ids outside the "
                                  f"vocabulary (0..{self.model.spec.vocab_size - 1})")
        group = []
        for r in requests:
            seq = _Seq(r, heapq.heappop(self._free))
            self._held[r.id] = self._rows[seq.slot] = seq
            group.append(seq)
        self._pending.append(group)

    def _finish(self, seq: _Seq, tok: int, done: list[EngineResult]) -> None:
        seq.tokens.append(tok)
        stop = self.eos is not None and tok == self.eos
        if stop or len(seq.tokens) >= seq.req.max_new_tokens:
            reason = "stop" if stop and len(seq.tokens) < seq.req.max_new_tokens else "length"
            done.append(EngineResult(seq.req.id, seq.tokens, reason))
            del self._held[seq.req.id]
            self._rows[seq.slot] = None
            heapq.heappush(self._free, seq.slot)

    def _decode_pass(self) -> tuple[list[_Seq], Any]:
        torch = self.torch
        running = [s for s in self._held.values() if s.tokens]
        if not running:
            return [], None
        rows = max(s.slot for s in running) + 1
        toks, pos = [0] * rows, [0] * rows
        for s in running:
            # the last generated token goes in at its position: prompt + generated - 1
            toks[s.slot], pos[s.slot] = s.tokens[-1], len(s.req.prompt) + len(s.tokens) - 1
        context = max(pos) + 1
        if self._graphs is not None:
            logits = self._graphs.decode(toks, pos, context)
        else:
            context = min(-(-context // 64) * 64, self._limits.max_seq_len)  # fewer shapes
            t = torch.tensor(toks, dtype=torch.long).to(self.device, non_blocking=True)
            p = torch.tensor(pos, dtype=torch.long).to(self.device, non_blocking=True)
            logits = self._decode(t, p, self.cache, context)
        self.decode_rows += logits.shape[0]
        return running, logits.argmax(-1)  # one token per slot row; running ones picked by slot

    def _prefill_pass(self, group: list[_Seq]) -> Any:
        torch = self.torch
        longest = max(len(s.req.prompt) for s in group)
        chunk = max(1, self._limits.max_num_tokens // longest)  # keep each pass within budget
        outs = []
        for i in range(0, len(group), chunk):
            part = group[i:i + chunk]
            plen = max(len(s.req.prompt) for s in part)
            # one upload per pass, not waiting for the device: row = prompt, padding, length, slot
            rows = [[*s.req.prompt, *[0] * (plen - len(s.req.prompt)), len(s.req.prompt), s.slot]
                    for s in part]
            host = torch.tensor(rows, dtype=torch.long)
            dev = (host.pin_memory() if self.device.type == "cuda" else host).to(
                self.device, non_blocking=True)
            outs.append(self.model.prefill(dev[:, :plen], dev[:, plen], dev[:, plen + 1],
                                           self.cache).argmax(-1))
            self.prefill_slots += plen * len(part)
        return torch.cat(outs)

    def step(self) -> list[EngineResult]:
        if self._closed:
            raise ConfigError("engine is closed")
        if not self._held:
            return []
        torch, clock = self.torch, time.perf_counter
        with torch.inference_mode(), self._attention():
            t0 = clock()
            # decode first: its spare rows may touch free/pending slots, which prefill overwrites
            running, dec = self._decode_pass()
            t1 = clock()
            groups, self._pending = self._pending, []
            pre = [self._prefill_pass(g) for g in groups]
            parts = ([dec] if dec is not None else []) + pre
            t2 = clock()
            flat = torch.cat(parts).tolist()  # the step's one device->host sync
        host = self.host_s
        host["decode"] += t1 - t0
        host["prefill"] += t2 - t1
        host["wait"] += clock() - t2
        nrows = 0 if dec is None else dec.shape[0]
        new_tokens = [flat[s.slot] for s in running] + flat[nrows:]
        seqs = running + [s for g in groups for s in g]
        done: list[EngineResult] = []
        for seq, tok in zip(seqs, new_tokens, strict=True):
            self._finish(seq, int(tok), done)
        self.steps += 1
        return done

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        from fabric_hpc.events import emit

        emit("infer.engine.stats", engine="pytorch", steps=self.steps, decode_rows=self.decode_rows,
             prefill_slots=self.prefill_slots, cuda_graphs=self._graphs is not None,
             host_s={k: round(v, 3) for k, v in self.host_s.items()})
        self._held.clear()
        self._pending.clear()
        self._graphs = None  # they hold the cache and their memory pool
        self.cache = None  # type: ignore[assignment]
        self.model = None
        if self.device.type == "cuda":
            self.torch.cuda.empty_cache()


register_engine("pytorch", read_pytorch_artefact, build_pytorch_engine)
