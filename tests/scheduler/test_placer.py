"""SolverPlacer: the GPUs-only ``fit`` answers exactly what ``place`` would choose."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fabric_hpc.placement import ClusterState, Request
from fabric_hpc.scheduler import Job, SolverPlacer

from .helpers import fabric

FAB = fabric(hosts=8, per_leaf=4)
REQUESTS = [Request(nodes=2, gpus_per_node=8), Request(nodes=3, gpus_per_node=4),
            Request(nodes=2, gpus_per_node=2, rail_aligned=True), Request(gpus=12),
            Request(gpus=6, numa_local=False), Request(nodes=4, gpus_per_node=8, max_domains=1)]


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(REQUESTS), st.lists(st.booleans(), min_size=len(FAB.gpus), max_size=len(FAB.gpus)),
       st.booleans())
def test_fit_equals_place(request, taken, fit_first):
    state = ClusterState(FAB)
    busy = np.flatnonzero(taken)
    if busy.size:
        state.allocate("other", busy)
    job = Job("j", request, submit=0.0, walltime=60.0)
    placer = SolverPlacer("greedy")
    if fit_first:  # either order: the memo must never hand a GPUs-only answer to place()
        gpus = placer.fit(job, state)
        placement = placer.place(job, state)
    else:
        placement = placer.place(job, state)
        gpus = placer.fit(job, state)
    assert gpus == (None if placement is None else placement.gpus)
    assert SolverPlacer("greedy").fit(job, state) == gpus  # cold memo, same answer
