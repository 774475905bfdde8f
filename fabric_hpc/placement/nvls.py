"""NVLink SHARP (NVLS): which GPUs' NVSwitches reduce all-reduces in the switch, and what an NVLS
all-reduce costs their NVLink ports (used by :mod:`fabric_hpc.placement.collective`; calibration in
docs/collective-model.md)."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from fabric_hpc.placement.collective import CollectiveParams
    from fabric_hpc.topology import Fabric

#: GPU model prefixes whose NVSwitch reduces in the switch (NVLink SHARP): NVLink4 (Hopper, NVSwitch
#: gen 3) and NVLink5 (Blackwell, NVSwitch gen 4). A100 (NVSwitch gen 2) and PCIe cards have none.
NVLS_GENERATION = {"H100": 4, "H200": 4, "H800": 4, "H20": 4, "GH200": 4,
                   "B200": 5, "B300": 5, "GB200": 5, "GB300": 5}


_NVLS: weakref.WeakKeyDictionary[Fabric, np.ndarray] = weakref.WeakKeyDictionary()


def nvls_generation(fab: Fabric) -> np.ndarray:
    """NVLink generation [G] of each GPU whose NVLink domain reduces in its NVSwitches (NVLink
    SHARP): 4 or 5; 0 where there is none (no NVSwitch, or a GPU model without SHARP)."""
    gen = _NVLS.get(fab)
    if gen is None:
        per_host = []
        for h in fab.hosts:
            ht = fab.host_type(h)
            switched = (ht.nvswitches > 0 or h in fab.nvl_domain_of_host) and "PCIE" not in ht.gpu_model.upper()
            per_host.append(NVLS_GENERATION.get(ht.gpu_model.upper().split("-")[0], 0) if switched else 0)
        gen = _NVLS[fab] = np.asarray(per_host, np.int8)[fab.index.gpu_host]
        gen.setflags(write=False)
    return gen


def nvls_bytes(fab: Fabric, gpus: np.ndarray, size: float, m: int, params: CollectiveParams) -> float | None:
    """NVLink SHARP all-reduce of ``size`` bytes on ``gpus`` (in ``m`` NVLink domains): the bytes each
    GPU's NVLink port carries, scaled to the ring's efficiency (``size · nvlink_eff / nvls_eff``: each
    byte goes up to the switch once and its sum comes down once, at the calibrated NVLS efficiency),
    or None where NVLS cannot run (several domains: NVLS-Tree is not modelled; no SHARP hardware)."""
    gen = nvls_generation(fab)[gpus]
    if m != 1 or len(gpus) < 2 or (gen == 0).any() or (gen != gen[0]).any():
        return None
    eff = params.nvls_eff_nvlink4 if gen[0] == 4 else params.nvls_eff_nvlink5
    return size * params.nvlink_eff / eff
