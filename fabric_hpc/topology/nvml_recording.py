"""Record NVML answers to JSON, and replay them through a fake with pynvml's function names.

Public surface (stdlib + pynvml only, so the file also runs on its own on a bare GPU machine:
``python fabric_hpc/topology/nvml_recording.py out.json``)::

    record_nvml(nvml=None) -> dict          # query NVML (the real pynvml module by default)
    save_recording(rec, path); load_recording(path) -> dict
    RecordedNvml(rec_or_path)               # replays a recording; ONLY for tests/CI (no GPU there)

Discovery (:mod:`fabric_hpc.topology.discover`) calls :func:`record_nvml` on whichever backend it is
given and interprets the answers, so the real path and the replayed path share all the code above
the pynvml calls. ``record_nvml(RecordedNvml(rec)) == rec`` (minus the ``recorded`` metadata).

Format (``"format": "fabric-hpc/nvml-recording"``, ``"version": 1``): ``init_error`` (an NVML error
code, when ``nvmlInit`` failed), ``driver_version``, and ``devices``: one object per GPU with
``name``, ``uuid``, ``pci_bus_id``, ``memory_total`` (bytes), ``numa_node``, ``cpu_affinity``
(64-bit words, lowest CPUs first), ``gpm_supported`` and ``nvlinks``: per link ``link``, ``state``
(1 active), and for active links ``version``, ``remote_type`` (0 GPU, 1 IBM NPU, 2 NVSwitch) and
``remote_pci_bus_id``; ``mig_mode`` ([current, pending], 1 on), only on GPUs with MIG; ``fabric``
(the multi-node NVLink fabric, ``nvmlDeviceGetGpuFabricInfoV``: ``cluster_uuid``, ``clique_id``,
``state`` (NVML_GPU_FABRIC_STATE_*: 0 not supported, 1 not started, 2 in progress, 3 completed),
``status`` (an NVML return code, 0 success) and ``health_mask``; no ``health_mask`` where only the v1
call ``nvmlDeviceGetGpuFabricInfo`` exists), only on GPUs that answer it (GB200/GB300, Hopper with
NVSwitches). Any answer NVML refused is ``{"nvml_error": <code>, "text": ...}``; a
device without NVLink has ``nvlinks: {"nvml_error": 3}`` (Not Supported).
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from fabric_hpc.atomic import write_atomic

FORMAT = "fabric-hpc/nvml-recording"
VERSION = 1
AFFINITY_WORDS = 16  # 1,024 CPUs
MAX_LINKS = 18       # NVLink4/5 GPUs have 18 links; pynvml's NVML_NVLINK_MAX_LINKS is larger
ERROR_NOT_SUPPORTED = 3
ERROR_INVALID_ARGUMENT = 2
ERROR_FUNCTION_NOT_FOUND = 13
#: pynvml's (function, struct) for the NVLink fabric: V (v2 struct, with healthMask), else v1 (R535).
FABRIC_CALLS = (("nvmlDeviceGetGpuFabricInfoV", "c_nvmlGpuFabricInfoV_t"),
                ("nvmlDeviceGetGpuFabricInfo", "c_nvmlGpuFabricInfo_t"))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _ask(nvml: Any, fn: str | Callable[..., Any], *args: Any, convert: Any = None) -> Any:
    """One NVML call (a pynvml name, or a callable); an NVML error becomes ``{"nvml_error": code}``
    instead of an exception."""
    try:
        value = (getattr(nvml, fn) if isinstance(fn, str) else fn)(*args)
    except nvml.NVMLError as exc:
        return {"nvml_error": int(exc.value), "text": str(exc)}
    return convert(value) if convert else value


def is_error(answer: Any) -> bool:
    return isinstance(answer, dict) and "nvml_error" in answer


def _real_nvml() -> Any:
    import pynvml

    return pynvml


def record_nvml(nvml: Any = None) -> dict[str, Any]:
    """Every NVML answer discovery uses, as a JSON-ready dict (``init_error`` when NVML won't start)."""
    nvml = nvml if nvml is not None else _real_nvml()
    rec: dict[str, Any] = {"format": FORMAT, "version": VERSION}
    init = _ask(nvml, "nvmlInit")
    if is_error(init):
        rec["init_error"] = init
        return rec
    try:
        rec["driver_version"] = _ask(nvml, "nvmlSystemGetDriverVersion", convert=_text)
        count = _ask(nvml, "nvmlDeviceGetCount")
        if is_error(count):
            rec["device_count_error"] = count
            count = 0
        rec["devices"] = [_record_device(nvml, nvml.nvmlDeviceGetHandleByIndex(i)) for i in range(count)]
    finally:
        _ask(nvml, "nvmlShutdown")
    return rec


def _record_device(nvml: Any, h: Any) -> dict[str, Any]:
    return {
        "name": _ask(nvml, "nvmlDeviceGetName", h, convert=_text),
        "uuid": _ask(nvml, "nvmlDeviceGetUUID", h, convert=_text),
        "pci_bus_id": _ask(nvml, "nvmlDeviceGetPciInfo", h, convert=lambda p: _text(p.busId)),
        "memory_total": _ask(nvml, "nvmlDeviceGetMemoryInfo", h, convert=lambda m: int(m.total)),
        "numa_node": _ask(nvml, "nvmlDeviceGetNumaNodeId", h, convert=int),
        "cpu_affinity": _ask(nvml, "nvmlDeviceGetCpuAffinity", h, AFFINITY_WORDS, convert=_words),
        "gpm_supported": _ask(nvml, "nvmlGpmQueryDeviceSupport", h,
                              convert=lambda s: bool(s.isSupportedDevice)),
        "nvlinks": _record_links(nvml, h),
        **_mig_mode(nvml, h),
        **_fabric(nvml, h),
    }


def _fabric(nvml: Any, h: Any) -> dict[str, Any]:
    """``{"fabric": {...}}``: the GPU's multi-node NVLink fabric (cluster UUID, clique, registration
    state and status, health mask) from pynvml's ``nvmlDeviceGetGpuFabricInfoV``, or the v1 call on a
    driver without it; nothing on a GPU without a fabric (Not Supported)."""
    answer: Any = {"nvml_error": ERROR_FUNCTION_NOT_FOUND,
                   "text": "pynvml has no nvmlDeviceGetGpuFabricInfoV: nvidia-ml-py is too old"}
    for fn, struct in FABRIC_CALLS:
        if not hasattr(nvml, fn) or not hasattr(nvml, struct):
            continue
        answer = _ask(nvml, _fabric_call, nvml, fn, struct, h, convert=_fabric_fields)
        if not (is_error(answer) and answer["nvml_error"] == ERROR_FUNCTION_NOT_FOUND):
            break
    return {} if is_error(answer) and answer["nvml_error"] == ERROR_NOT_SUPPORTED else {"fabric": answer}


def _fabric_call(nvml: Any, fn: str, struct: str, h: Any) -> Any:
    info = getattr(nvml, struct)()  # the V struct's constructor sets its version (nvmlGpuFabricInfo_v2)
    getattr(nvml, fn)(h, ctypes.byref(info))
    return info


def _fabric_fields(info: Any) -> dict[str, Any]:
    out = {"cluster_uuid": str(uuid.UUID(bytes=bytes(info.clusterUuid))), "clique_id": int(info.cliqueId),
           "state": int(info.state), "status": int(info.status)}
    if hasattr(info, "healthMask"):
        out["health_mask"] = int(info.healthMask)
    return out


def _mig_mode(nvml: Any, h: Any) -> dict[str, Any]:
    """``{"mig_mode": [current, pending]}`` (1 = on), or nothing on a GPU without MIG."""
    mode = _ask(nvml, "nvmlDeviceGetMigMode", h, convert=lambda m: [int(x) for x in m])
    return {} if is_error(mode) and mode["nvml_error"] == ERROR_NOT_SUPPORTED else {"mig_mode": mode}


def _words(array: Any) -> list[int]:
    words = [int(w) for w in array]
    while words and words[-1] == 0:
        words.pop()
    return words


def _record_links(nvml: Any, h: Any) -> list[dict[str, Any]] | dict[str, Any]:
    links: list[dict[str, Any]] = []
    for link in range(MAX_LINKS):
        state = _ask(nvml, "nvmlDeviceGetNvLinkState", h, link, convert=int)
        if is_error(state):
            if state["nvml_error"] == ERROR_INVALID_ARGUMENT:
                break  # past the device's last link
            if link == 0 and state["nvml_error"] == ERROR_NOT_SUPPORTED:
                return state  # no NVLink on this device
        entry: dict[str, Any] = {"link": link, "state": state}
        if state == 1:
            entry["version"] = _ask(nvml, "nvmlDeviceGetNvLinkVersion", h, link, convert=int)
            entry["remote_type"] = _ask(nvml, "nvmlDeviceGetNvLinkRemoteDeviceType", h, link, convert=int)
            entry["remote_pci_bus_id"] = _ask(nvml, "nvmlDeviceGetNvLinkRemotePciInfo", h, link,
                                              convert=lambda p: _text(p.busId))
        links.append(entry)
    return links


def save_recording(rec: dict[str, Any], path: str | os.PathLike[str], *, note: str = "") -> Path:
    """Write a recording (adds ``recorded``: host, time, note) as indented JSON, atomically."""
    path = Path(path)
    out = dict(rec)
    out.setdefault("recorded", {"host": socket.gethostname(), "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                "note": note})
    return write_atomic(path, json.dumps(out, indent=1) + "\n")


def load_recording(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a recording; ValueError (a ConfigError inside fabric_hpc) when it is not one."""
    path = Path(path)
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _config_error(f"NVML recording {str(path)!r} does not exist", not_found=True) from None
    except json.JSONDecodeError as exc:
        raise _config_error(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    if not isinstance(rec, dict) or rec.get("format") != FORMAT or rec.get("version") != VERSION:
        raise _config_error(f"{path}: not an NVML recording (format {FORMAT!r} version {VERSION})")
    return rec


def _config_error(message: str, not_found: bool = False) -> Exception:
    hint = "record one with: python fabric_hpc/topology/nvml_recording.py OUT.json (on a GPU host)"
    try:
        from fabric_hpc.errors import ConfigError, NotFoundError
    except ImportError:  # running standalone on a bare GPU machine
        return FileNotFoundError(message) if not_found else ValueError(message)
    return (NotFoundError if not_found else ConfigError)(message, hint=hint)


class RecordedNvml:
    """A fake ``pynvml`` that answers from a recording. For tests and CI only: it exists because
    NVML cannot run without an NVIDIA driver. Refused answers raise pynvml's own NVMLError."""

    def __init__(self, recording: dict[str, Any] | str | os.PathLike[str]) -> None:
        import pynvml

        self.rec = recording if isinstance(recording, dict) else load_recording(recording)
        self.NVMLError = pynvml.NVMLError
        self.c_nvmlGpuFabricInfoV_t = pynvml.c_nvmlGpuFabricInfoV_t
        self.c_nvmlGpuFabricInfo_t = pynvml.c_nvmlGpuFabricInfo_t
        self._started = False

    def _answer(self, value: Any) -> Any:
        if is_error(value):
            raise self.NVMLError(value["nvml_error"])
        return value

    def _dev(self, h: int) -> dict[str, Any]:
        if not self._started:
            raise self.NVMLError(1)  # NVML_ERROR_UNINITIALIZED
        return self.rec["devices"][h]

    def nvmlInit(self) -> None:
        self._answer(self.rec.get("init_error"))
        self._started = True

    def nvmlShutdown(self) -> None:
        self._started = False

    def nvmlSystemGetDriverVersion(self) -> str:
        return self._answer(self.rec["driver_version"])

    def nvmlDeviceGetCount(self) -> int:
        if "device_count_error" in self.rec:
            self._answer(self.rec["device_count_error"])
        return len(self.rec.get("devices", []))

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        self._dev(i)
        return i

    def nvmlDeviceGetName(self, h: int) -> str:
        return self._answer(self._dev(h)["name"])

    def nvmlDeviceGetUUID(self, h: int) -> str:
        return self._answer(self._dev(h)["uuid"])

    def nvmlDeviceGetPciInfo(self, h: int) -> SimpleNamespace:
        return SimpleNamespace(busId=self._answer(self._dev(h)["pci_bus_id"]))

    def nvmlDeviceGetMemoryInfo(self, h: int) -> SimpleNamespace:
        return SimpleNamespace(total=self._answer(self._dev(h)["memory_total"]))

    def nvmlDeviceGetNumaNodeId(self, h: int) -> int:
        return self._answer(self._dev(h)["numa_node"])

    def nvmlDeviceGetCpuAffinity(self, h: int, words: int) -> list[int]:
        mask = self._answer(self._dev(h)["cpu_affinity"])
        return (list(mask) + [0] * words)[:words]

    def nvmlGpmQueryDeviceSupport(self, h: int) -> SimpleNamespace:
        return SimpleNamespace(isSupportedDevice=int(self._answer(self._dev(h)["gpm_supported"])))

    def nvmlDeviceGetMigMode(self, h: int) -> list[int]:
        return self._answer(self._dev(h).get("mig_mode", {"nvml_error": ERROR_NOT_SUPPORTED}))

    def nvmlDeviceGetGpuFabricInfoV(self, h: int, ref: Any) -> int:
        """Fills the struct ``ref`` points at, as pynvml's call does (``ctypes.byref(info)``); a
        recording made with the v1 call (no ``health_mask``) answers Function Not Found here."""
        answer = self._fabric(h)
        if "health_mask" not in answer:
            raise self.NVMLError(ERROR_FUNCTION_NOT_FOUND)
        ref._obj.healthMask = answer["health_mask"]
        return self.nvmlDeviceGetGpuFabricInfo(h, ref)

    def nvmlDeviceGetGpuFabricInfo(self, h: int, ref: Any) -> int:
        answer, info = self._fabric(h), ref._obj
        for i, byte in enumerate(uuid.UUID(answer["cluster_uuid"]).bytes):
            info.clusterUuid[i] = byte
        info.cliqueId, info.state, info.status = answer["clique_id"], answer["state"], answer["status"]
        return 0

    def _fabric(self, h: int) -> dict[str, Any]:
        return self._answer(self._dev(h).get("fabric", {"nvml_error": ERROR_NOT_SUPPORTED}))

    def _link(self, h: int, link: int) -> dict[str, Any]:
        links = self._answer(self._dev(h)["nvlinks"])
        if not 0 <= link < len(links):
            raise self.NVMLError(ERROR_INVALID_ARGUMENT)
        return links[link]

    def nvmlDeviceGetNvLinkState(self, h: int, link: int) -> int:
        return self._answer(self._link(h, link)["state"])

    def _active(self, h: int, link: int, key: str) -> Any:
        entry = self._link(h, link)
        return self._answer(entry.get(key, {"nvml_error": ERROR_NOT_SUPPORTED}))

    def nvmlDeviceGetNvLinkVersion(self, h: int, link: int) -> int:
        return self._active(h, link, "version")

    def nvmlDeviceGetNvLinkRemoteDeviceType(self, h: int, link: int) -> int:
        return self._active(h, link, "remote_type")

    def nvmlDeviceGetNvLinkRemotePciInfo(self, h: int, link: int) -> SimpleNamespace:
        return SimpleNamespace(busId=self._active(h, link, "remote_pci_bus_id"))


def main(argv: list[str] | None = None) -> int:
    """``python nvml_recording.py OUT.json [NOTE]``: record this host's NVML answers."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(main.__doc__)
        return 2
    rec = record_nvml()
    save_recording(rec, args[0], note=" ".join(args[1:]))
    if "init_error" in rec:
        print(f"NVML did not start: {rec['init_error']['text']} (recorded anyway)", file=sys.stderr)
    print(f"recorded {len(rec.get('devices', []))} GPU(s) to {args[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
