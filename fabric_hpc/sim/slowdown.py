"""Communication slowdown: a gang's run time stretches with how scattered its placement is.

A trace gives each job's run time at a compact placement. When the scheduler spreads the gang
over more domains than it needs, its collective communication crosses slower links and every
training step takes longer. The model, per placement::

    stretch = 1 + sensitivity × Σ_levels penalty[level] × log2(spanned[level] / needed[level])

* ``spanned[level]``: domains of that level the placement touches (``Placement.domains``);
* ``needed[level]``: the fewest that could hold the gang (``ceil(gpus / largest domain's GPUs)``);
* ``penalty``: the cost of doubling the spread at that level. Defaults: ``host`` (leaving the
  NVLink/NVSwitch domain of a host for the network) 0.20, ``nvlink`` (leaving an NVL72 rack) 0.20,
  any network level (``leaf``, ``spine``, ``core``, ...) 0.10;
* ``sensitivity``: ``job.meta["comm_sensitivity"]`` (default 1.0; 0 for jobs that do not communicate).

Rationale (assumptions, not measurements): NVLink gives ~900 GB/s per H100 GPU against ~50 GB/s
of a 400 Gb/s NIC, so leaving the host moves ring all-reduce onto links ~18× slower; with
communication a fraction of step time (data-parallel training overlaps much of it) a 20 % stretch
per doubling of hosts is a moderate choice; crossing leaf / spine switches adds hops and
oversubscription contention (Tiresias, NSDI'19, and Gandiva, OSDI'18, report consolidation
sensitivity of up to several × for communication-heavy models; Philly, ATC'19, reports that
locality affects GPU utilisation). Single-host jobs and jobs at their minimum spread pay nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from fabric_hpc.placement import Placement
from fabric_hpc.placement.levels import fabric_levels
from fabric_hpc.scheduler.contract import Job
from fabric_hpc.topology import Fabric


@dataclass
class CommSlowdown:
    penalties: dict[str, float] = field(default_factory=lambda: {"host": 0.20, "nvlink": 0.20})
    network_penalty: float = 0.10

    def __post_init__(self) -> None:
        self._cap: dict[int, dict[str, int]] = {}

    def capacities(self, fab: Fabric) -> dict[str, int]:
        """GPUs in the largest domain of each placement level."""
        key = id(fab)
        if key not in self._cap:
            lv = fabric_levels(fab)
            caps = {}
            for name, j in lv.alias.items():
                per = np.bincount(lv.host_dom[:, j], weights=lv.host_gpus)
                caps[name] = int(per.max(initial=1))
            self._cap[key] = caps
        return self._cap[key]

    def factor(self, job: Job, placement: Placement, fab: Fabric) -> float:
        gpus = len(placement.gpus)
        sens = float(job.meta.get("comm_sensitivity", 1.0)) if job.meta else 1.0
        if gpus <= 1 or sens == 0:
            return 1.0
        caps = self.capacities(fab)
        total = 0.0
        for level, spanned in placement.domains.items():
            if level not in caps or spanned <= 1:
                continue
            needed = max(1, math.ceil(gpus / max(caps[level], 1)))
            if spanned > needed:
                total += self.penalties.get(level, self.network_penalty) * math.log2(spanned / needed)
        return 1.0 + sens * total
