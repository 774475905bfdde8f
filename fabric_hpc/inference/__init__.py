"""Batch inference saturation harness: keep an engine fed with pad-minimal batches, bound every
queue, never lose or duplicate a result. See ``docs/inference.md``.

The engine contract is :mod:`fabric_hpc.inference.engine`; shared engine contract tests are in
:mod:`fabric_hpc.inference.testing`. mpi4py is imported only when running under an MPI launcher.
"""

from fabric_hpc.inference.admission import TokenBudget, budget_for
from fabric_hpc.inference.engine import (
    Engine,
    EngineConfig,
    EngineConfigError,
    EngineLimits,
    EngineRequest,
    EngineResult,
    KnowsVocabulary,
    build_engine,
    load_engine_config,
    register_engine,
)
from fabric_hpc.inference.intake import DeadLetter, WorkItem, parse_item, read_items
from fabric_hpc.inference.journal import ChunkSink, MergeError, committed_ids, merge_outputs
from fabric_hpc.inference.lanes import ShapeLanes
from fabric_hpc.inference.pipeline import Pipeline, PipelineOptions
from fabric_hpc.inference.runner import job_status, merge_job, run_job
from fabric_hpc.inference.scheduler import Scheduler
from fabric_hpc.inference.simulated import (
    H100_1B,
    ZERO_COST,
    CostModel,
    SimulatedEngine,
    VirtualClock,
    write_simulated_artefact,
)

__all__ = [
    "H100_1B", "ZERO_COST", "ChunkSink", "CostModel", "DeadLetter", "Engine", "EngineConfig",
    "EngineConfigError", "EngineLimits", "EngineRequest", "EngineResult", "KnowsVocabulary", "MergeError",
    "Pipeline", "PipelineOptions", "Scheduler", "ShapeLanes", "SimulatedEngine", "TokenBudget",
    "VirtualClock", "WorkItem", "budget_for", "build_engine", "committed_ids",
    "job_status", "load_engine_config", "merge_job", "merge_outputs", "parse_item", "read_items",
    "register_engine", "run_job", "write_simulated_artefact",
]
