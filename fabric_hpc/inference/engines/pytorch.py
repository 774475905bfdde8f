"""The PyTorch reference engine: continuous batching over a Llama-style decoder.

Builds a :class:`TorchEngine` from a prepared artefact directory (``fabric_engine.json`` beside a
Hugging Face Llama ``config.json``: :mod:`.artefact` says what it holds, how it is prepared and
how it is checked) and registers the ``pytorch`` engine with the harness.

torch is imported only when an engine is built or an artefact with weights is prepared.
"""

from __future__ import annotations

import functools
import heapq
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fabric_hpc.errors import ConfigError
from fabric_hpc.inference.engine import (
    EngineConfig,
    EngineLimits,
    EngineRequest,
    EngineResult,
    check_add,
    register_engine,
)
from fabric_hpc.inference.engines.artefact import (
    _DTYPES,
    ENGINE_FILE,
    EngineBuild,
    _checkpoint_plan,
    _read_json,
    prepare_pytorch_engine,
    read_build,
    read_pytorch_artefact,
)
from fabric_hpc.inference.engines.spec import LlamaSpec

__all__ = ["ENGINE_FILE", "EngineBuild", "TorchEngine", "prepare_pytorch_engine",
           "read_pytorch_artefact"]

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
    """``device`` checked (cpu, cuda, cuda:N), ``cuda`` meaning GPU ``local_rank`` modulo those
    visible; without ``device`` that GPU, else the CPU."""
    import torch

    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    try:
        dev = torch.device(device) if isinstance(device, str) else None
    except (RuntimeError, ValueError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"engine option device={device!r} is not a device the PyTorch engine runs on",
                          hint="device='cpu', 'cuda' (GPU local_rank modulo those visible) or 'cuda:N'")
    if dev.type == "cpu":
        return dev
    if not torch.cuda.is_available():
        why = "CPU-only torch" if torch.version.cuda is None else "no GPU visible to this CUDA build of torch"
        raise ConfigError(f"engine option device={device!r}: CUDA is not available on this node ({why})",
                          hint="use device='cpu' (or leave device out), or run on a GPU node with a CUDA "
                               "build of torch")
    count = torch.cuda.device_count()
    if dev.index is None:
        return torch.device("cuda", local_rank % count)
    if dev.index >= count:
        raise ConfigError(f"engine option device={device!r}: this node shows {count} GPU(s) (cuda:0..cuda:{count - 1})",
                          hint="pick a visible GPU, or leave device out (GPU local_rank modulo those visible)")
    return dev


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
    from fabric_hpc.extras import require

    for module in ("torch", "safetensors"):  # a base install: one line naming the pip extra
        require(module, extra="torch", needed_for="the pytorch inference engine")
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

    @property
    def vocab_size(self) -> int:
        """Prompt token ids must be below it (:class:`~fabric_hpc.inference.engine.KnowsVocabulary`)."""
        return int(self.model.spec.vocab_size)

    def active(self) -> int:
        return len(self._held)

    def add(self, requests: Sequence[EngineRequest]) -> None:
        check_add(self._limits, requests, self._held, closed=self._closed)
        if not requests:
            return
        for r in requests:
            if any(not 0 <= t < self.model.spec.vocab_size for t in r.prompt):
                raise ConfigError(f"engine.add: request {r.id!r} has token ids outside the "
                                  f"vocabulary (0..{self.model.spec.vocab_size - 1})",
                                  hint="tokenise prompts with this model's own tokenizer (ids below its "
                                       f"vocab_size {self.model.spec.vocab_size}); fix or remove that item "
                                       "and rerun with the same --output")
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
