"""Static sharding (longest first) and lazy heavy imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from fabric_hpc.cli.main import cli
from fabric_hpc.inference.mpi import shard_longest_first, slurm_pmi_defaults


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(1, 2000), max_size=300), st.integers(1, 8))
def test_partition_every_id_once_and_balanced(costs: list[int], size: int) -> None:
    items = [(f"id{i}", c) for i, c in enumerate(costs)]
    shards = shard_longest_first(items, size)
    assert len(shards) == size
    flat = [i for s in shards for i in s]
    assert sorted(flat) == sorted(i for i, _ in items)          # none dropped, none twice
    loads = [sum(c for i, c in items if i in s) for s in shards]
    if costs:
        assert max(loads) - min(loads) <= max(costs)              # greedy LPT balance bound
    assert shard_longest_first(list(reversed(items)), size) == shards  # same on every rank


def test_single_rank_run_imports_neither_mpi4py_nor_torch(tmp_path: Path) -> None:
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from fabric_hpc.inference import (EngineLimits, VirtualClock, run_job,\n"
        "                                  write_simulated_artefact)\n"
        "t = Path(sys.argv[1])\n"
        "cfg = write_simulated_artefact(t / 'e', limits=EngineLimits(4, 256, 32, 64, 256))\n"
        "item = {'id': 'a', 'prompt': [1, 2], 'max_new_tokens': 3}\n"
        "(t / 'in.jsonl').write_text(json.dumps(item) + '\\n')\n"
        "r = run_job(cfg, str(t / 'in.jsonl'), t / 'out', engine_options={'clock': VirtualClock()})\n"
        "print(json.dumps([r['items_done'], 'mpi4py' in sys.modules, 'torch' in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                         text=True, check=True, cwd=Path(__file__).resolve().parents[2])
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [1, False, False]


def test_cli_bench_reports_all_measures() -> None:
    r = CliRunner().invoke(cli, ["infer", "bench", "--items", "2000", "--saturation-items", "200",
                                 "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["overhead"]["items"] == 2000 and data["overhead"]["core_items_per_s"] > 0
    sat = data["saturation"]
    assert sat["items_done"] == 200
    assert sat["padding_waste"] < sat["static_b32_waste"]
    assert 0 < sat["engine_busy_fraction"] <= 1.0


def test_slurm_pmi_defaults_only_under_srun_and_never_override():
    srun = {"PMI_FD": "5", "SLURM_STEP_ID": "0", "PMI_RANK": "0"}
    assert slurm_pmi_defaults(srun) == {"MPIR_CVAR_CH4_NETMOD": "ofi", "FI_PROVIDER": "tcp"}
    assert slurm_pmi_defaults({**srun, "FI_PROVIDER": "verbs"}) == {"MPIR_CVAR_CH4_NETMOD": "ofi"}
    assert slurm_pmi_defaults({"PMI_RANK": "0", "HYDI_CONTROL_FD": "7"}) == {}  # mpiexec: untouched
    # mpiexec inside a Slurm step (hydra's own PMI server): untouched too
    assert slurm_pmi_defaults({**srun, "HYDI_CONTROL_FD": "7"}) == {}
