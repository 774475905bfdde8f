"""Real engines behind the harness's :class:`~fabric_hpc.inference.engine.Engine` contract.

* ``pytorch`` (:mod:`.pytorch`): the PyTorch reference engine -- a Llama-style decoder with a
  slot-based KV cache, batched prefill and continuous-batching decode; CPU (float32) or GPU
  (bfloat16).
* ``tensorrt_llm`` (:mod:`.trtllm`): an adapter over TensorRT-LLM's executor API, one engine
  per MPI rank.

Importing this package imports neither torch nor tensorrt_llm; engines register with
:func:`~fabric_hpc.inference.engine.register_engine` when their module is imported (which
:func:`~fabric_hpc.inference.engine.load_engine_config` does on first use). See docs/engines.md.
"""

from fabric_hpc.inference.engines.pytorch import (
    TorchEngine,
    prepare_pytorch_engine,
    read_pytorch_artefact,
)
from fabric_hpc.inference.engines.spec import PRESETS, LlamaSpec
from fabric_hpc.inference.engines.trtllm import TrtllmEngine, TrtllmUnavailable

__all__ = ["PRESETS", "LlamaSpec", "TorchEngine", "TrtllmEngine", "TrtllmUnavailable",
           "prepare_pytorch_engine", "read_pytorch_artefact"]
