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
``remote_pci_bus_id``; ``mig_mode`` ([current, pending], 1 on), only on GPUs with MIG. Any answer
NVML refused is ``{"nvml_error": <code>, "text": ...}``; a
device without NVLink has ``nvlinks: {"nvml_error": 3}`` (Not Supported).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
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


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _ask(nvml: Any, fn: str, *args: Any, convert: Any = None) -> Any:
    """One NVML call; an NVML error becomes ``{"nvml_error": code}`` instead of an exception."""
    try:
        value = getattr(nvml, fn)(*args)
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
    }


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
    path.parent.mkdir(parents=True, exist_ok=True)
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
