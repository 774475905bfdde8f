"""Multi-node NVLink (GB200/GB300 NVL72): a GPU's NVLink domain from NVML's fabric info.

NVML's ``nvmlDeviceGetGpuFabricInfoV`` (recorded by :mod:`~fabric_hpc.topology.nvml_recording` as a
device's ``fabric``) tells, per GPU, the cluster UUID and clique id of the NVLink partition the GPU
registered in, the registration ``state`` and its ``status``. GPUs (of any host) with the same
``<clusterUuid>.<cliqueId>`` share one NVLink domain: the id NVIDIA's GPU feature discovery puts in the
Kubernetes label ``nvidia.com/gpu.clique``. Public surface::

    gpu_fabric(answer, index, notes) -> dict | None    # one GPU's facts (``domain``: the id or None)
    host_domain(gpus, notes) -> str | None             # the host's domain: the one its GPUs share
    domain_id(cluster_uuid, clique_id) -> str
"""

from __future__ import annotations

from typing import Any

from fabric_hpc.topology.nvml_recording import ERROR_FUNCTION_NOT_FOUND, ERROR_NOT_SUPPORTED, is_error

STATE_NAMES = {0: "not supported", 1: "not started", 2: "in progress", 3: "completed"}
STATE_COMPLETED = 3
ZERO_UUID = "00000000-0000-0000-0000-000000000000"
#: NVML_GPU_FABRIC_HEALTH_MASK_*: (shift, width mask, the value that is a problem, what it means).
HEALTH_PROBLEMS = ((0, 0x3, 1, "NVLink bandwidth is degraded"),
                   (4, 0x3, 1, "fabric routes are unhealthy"))
HEALTH_CONFIG_SHIFT, HEALTH_CONFIG_WIDTH = 8, 0xF  # incorrect configuration: 0 n/a, 1 none, 2.. a fault
FIX = ("check that the NVLink fabric is up on this host: `nvidia-smi -q` shows Fabric State/Status, "
       "`systemctl status nvidia-imex` (and nvidia-fabricmanager / the switch trays' NMX), then discover "
       "again")


def domain_id(cluster_uuid: str, clique_id: int) -> str:
    """``<clusterUuid>.<cliqueId>``: the NVLink domain's id (k8s's ``nvidia.com/gpu.clique`` label)."""
    return f"{cluster_uuid}.{clique_id}"


def gpu_fabric(answer: Any, index: int, notes: list[str]) -> dict[str, Any] | None:
    """The facts of GPU ``index``'s fabric answer (None: the GPU has no NVLink fabric, a normal
    non-MNNVL host). A registration that is not completed, or completed with an error status, is a
    note naming the GPU and the fix; the GPU then has no ``domain``."""
    if answer is None or (is_error(answer) and answer["nvml_error"] == ERROR_NOT_SUPPORTED):
        return None
    if is_error(answer):
        if answer["nvml_error"] != ERROR_FUNCTION_NOT_FOUND:
            notes.append(f"GPU {index}: NVML did not give its NVLink fabric info ({answer.get('text')}); its "
                         f"multi-node NVLink domain is unknown: {FIX}")
        return {"error": answer.get("text") or f"NVML error {answer['nvml_error']}",
                "nvml_error": answer["nvml_error"], "domain": None}
    state, status = answer["state"], answer["status"]
    if state == 0:
        return None
    out = {"cluster_uuid": answer["cluster_uuid"], "clique_id": answer["clique_id"],
           "state": STATE_NAMES.get(state, f"unknown ({state})"), "status": status,
           "health_mask": answer.get("health_mask"), "domain": None}
    if state != STATE_COMPLETED:
        notes.append(f"GPU {index}: NVLink fabric registration is {out['state']}, not completed: the GPU is "
                     f"in no multi-node NVLink domain yet; {FIX}")
    elif status != 0:
        notes.append(f"GPU {index}: NVLink fabric registration failed (status: {_status_text(status)}): the "
                     f"GPU is in no multi-node NVLink domain; {FIX}")
    elif answer["cluster_uuid"] != ZERO_UUID:  # zeros: a single-host NVSwitch system (HGX), no MNNVL
        out["domain"] = domain_id(answer["cluster_uuid"], answer["clique_id"])
        _health_notes(answer.get("health_mask"), index, notes)
    return out


def _health_notes(mask: Any, index: int, notes: list[str]) -> None:
    if not isinstance(mask, int):
        return
    bad = [what for shift, width, value, what in HEALTH_PROBLEMS if (mask >> shift) & width == value]
    if (mask >> HEALTH_CONFIG_SHIFT) & HEALTH_CONFIG_WIDTH >= 2:
        bad.append(f"the fabric reports an incorrect configuration (code "
                   f"{(mask >> HEALTH_CONFIG_SHIFT) & HEALTH_CONFIG_WIDTH}, NVML_GPU_FABRIC_HEALTH_MASK_"
                   "INCORRECT_CONFIGURATION_*)")
    if bad:
        notes.append(f"GPU {index}: NVLink fabric health mask {mask:#x}: {'; '.join(bad)}; {FIX}")


def _status_text(status: int) -> str:
    try:
        import pynvml

        return f"{pynvml.NVMLError(status)} (NVML error {status})"
    except ImportError:
        return f"NVML error {status}"


def host_domain(gpus: list[dict[str, Any]], notes: list[str]) -> str | None:
    """The multi-node NVLink domain all of the host's fabric GPUs share (None: none, or they disagree:
    a note then names the GPUs of each domain; assembling such a host is an error)."""
    domains: dict[str, list[int]] = {}
    for g in gpus:
        if g.get("fabric") and g["fabric"]["domain"]:
            domains.setdefault(g["fabric"]["domain"], []).append(g["index"])
    if len(domains) > 1:
        parts = "; ".join(f"GPU {', '.join(map(str, ix))} in {d}" for d, ix in domains.items())
        notes.append(f"the host's GPUs are in {len(domains)} NVLink domains ({parts}): a host's GPUs belong "
                     f"to one NVLink partition; {FIX}")
        return None
    if not domains:
        if any((g.get("fabric") or {}).get("nvml_error") == ERROR_FUNCTION_NOT_FOUND for g in gpus):
            notes.append("NVML has no NVLink fabric call here (driver older than R535, or nvidia-ml-py older "
                         "than 12.535): a multi-node NVLink domain, if any, is not discovered")
        return None
    (domain, index), = domains.items()
    notes.append(f"GPU {', '.join(map(str, index))} in the multi-node NVLink domain {domain} (NVML fabric "
                 "<clusterUuid>.<cliqueId>; the sidecar's nvlink_domain): `fabric topology assemble` joins "
                 "the hosts of one domain into nvlink_domains")
    return domain
