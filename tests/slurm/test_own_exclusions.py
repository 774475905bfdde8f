"""A job's own ``-x`` (Slurm's ``ExcNodeList``) keeps the agent off those hosts, as it keeps Slurm off them:
before, the agent pinned ``sbatch -N2 -x n2`` to n1, n2, Slurm rejected the pin (``BadConstraints``), the
agent handed the job over and Slurm ran it elsewhere. The same on live Slurm:
tests/slurm_integration/test_own_exclusions_live.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from fabric_hpc.hostlist import compress, expand
from fabric_hpc.slurm.view import build_view
from tests.slurm.test_agent_actions import FAB, Fake, agent, events
from tests.slurm.test_agent_actions import gang as _gang

NAMES = [f"n{i}" for i in range(1, 17)]


def gang(job_id: int, *, comment: str = "fabric", exc_nodes: tuple[str, ...] = ()):
    return replace(_gang(job_id), comment=comment, exc_nodes=exc_nodes)


def _excluded(job) -> set[str]:
    view = build_view(FAB, Fake([]).nodes(), [job], now=100.0)
    (pending,) = view.pending
    exclude = pending.job.request.exclude
    return set(expand(exclude)) if exclude else set()


def test_the_jobs_own_exclusions_join_the_placement_exclude() -> None:
    assert _excluded(gang(1, exc_nodes=("n2",))) == {"n2"}
    assert _excluded(gang(1, exc_nodes=("n2", "n5"), comment="fabric:exclude=n7")) == {"n2", "n5", "n7"}
    assert _excluded(gang(1)) == set()


def test_excluded_hosts_slurm_does_not_list_are_left_out() -> None:
    assert _excluded(gang(1, exc_nodes=("n2", "gpu99"))) == {"n2"}


def test_the_agent_never_pins_a_job_to_its_own_excluded_host(tmp_path: Path) -> None:
    client = Fake([gang(1, exc_nodes=("n2",))])
    res = agent(tmp_path, client).cycle()
    [entry] = res.started
    assert len(entry["hosts"]) == 2 and "n2" not in entry["hosts"], entry
    pins = [f["ReqNodeList"] for kind, j, f in client.calls if kind == "update" and f.get("ReqNodeList")]
    assert pins and all("n2" not in expand(p) for p in pins), pins
    assert not [e for e in events(tmp_path) if e["event"] == "agent.handoff"]


def test_a_job_whose_exclusions_leave_no_host_is_handed_to_slurm_saying_why(tmp_path: Path) -> None:
    job = gang(1, exc_nodes=tuple(NAMES[1:]))  # only n1 left for a 2-node job: never fits
    view = build_view(FAB, Fake([]).nodes(), [gang(2, exc_nodes=tuple(NAMES))], now=100.0)
    assert not view.pending and "excludes every host" in view.invalid[2], view.invalid
    assert "-x" in view.invalid[2]
    view = build_view(FAB, Fake([]).nodes(), [job], now=100.0)
    assert set(expand(view.pending[0].job.request.exclude)) == set(NAMES[1:])


def test_an_include_handoff_exclusion_is_consistent_with_include() -> None:
    """After a hand-over the job's ExcNodeList holds the agent's own exclusion (every node outside
    ``include=``): placing it again keeps to the include hosts, as Slurm will."""
    out = compress(sorted(set(NAMES) - {"n3", "n4", "n5", "n6"}))
    job = gang(1, comment="fabric:include=n[3-6]", exc_nodes=tuple(expand(out)))
    view = build_view(FAB, Fake([]).nodes(), [job], now=100.0)
    (pending,) = view.pending
    assert set(expand(pending.job.request.exclude)) == set(NAMES) - {"n3", "n4", "n5", "n6"}
    assert pending.job.request.include
