"""Visual report of a fabric: one self-contained HTML page, plus a static PNG/SVG.

The page shows the switch hierarchy (one box per switch group, nested: core → spine groups →
leaf groups → hosts → GPUs), NVLink domains and rails, every GPU coloured by its state (free,
down, or the job holding it, one colour per job), a legend with per-job counts and the NVLink
domains and leaf groups each job spans, and details on hover/click. Large fabrics open
aggregated: each collapsed group shows a utilisation bar and a one-pixel-per-GPU mini map, and
expands on click. Everything (data, script, style) is inline: no network access is needed.

Usage::

    from fabric_hpc.topology import build, generators
    from fabric_hpc.topology.report import write_report
    fab = build(generators.superpod(sus=4))
    occ = {"su01-h01/gpu0": "job-17", "su02-h07": "down"}      # GPU ids or host names
    summary = write_report(fab, "report.html", occupancy=occ, png="report.png", svg="report.svg")

The static picture (matplotlib, Agg, no pyplot state) is the aggregated view: one row per leaf
group with its utilisation bar and a per-GPU heat strip, grouped by parent, with a legend.
"""

from __future__ import annotations

import colorsys
import html
import json
import re
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fabric_hpc.atomic import write_atomic
from fabric_hpc.errors import ConfigError, NotFoundError
from fabric_hpc.topology.model import Fabric, gpu_numa_of, rail_of

if TYPE_CHECKING:
    from fabric_hpc.placement.state import ClusterState

FREE, DOWN = 0, 1  # state codes; job j has code 2 + j
FREE_COLOR = "#dde3ea"
DOWN_COLOR = "#d32f2f"
#: Job colours: Kenneth L. Kelly's "Twenty-two colors of maximum contrast" (Color Engineering 3(6),
#: 1965), in his order (the first n are the most distinct n), as the sRGB values commonly given for
#: his ISCC-NBS colours; left out: white (looks free), vivid red and reddish orange (look down).
#: Closest pair: CIE76 dE 15 (the earlier palette had pairs at 5). More jobs get golden-angle hues.
JOB_PALETTE = ("#f3c300", "#875692", "#f38400", "#a1caf1", "#c2b280", "#848482", "#008856", "#e68fac",
               "#0067a5", "#f99379", "#604e97", "#f6a600", "#b3446c", "#dcd300", "#882d17", "#8db600",
               "#654522", "#2b3d26", "#222222")
_ASSETS = "report_assets"
MAX_JOB_ID = 256  # characters; the page cuts long names with an ellipsis, the picture at 40


@dataclass(frozen=True)
class JobStats:
    gpus: int
    hosts: int
    nvlink_domains: int
    leaf_groups: int
    color: str


@dataclass(frozen=True)
class ReportSummary:
    """What the report shows, for the CLI (``--json``) and tests."""

    fabric: str
    hosts: int
    gpus: int
    free: int
    allocated: int
    down: int
    jobs: dict[str, JobStats]
    html: str
    html_bytes: int
    png: str | None = None
    svg: str | None = None
    groups_per_level: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- occupancy -----------------------------------------------------------------------------------
def _natural_key(text: str) -> tuple:
    """Natural order (9 before 10) for runs of digits of any length: ``int()`` of a run of more than
    4,300 digits raised ValueError (a traceback from a trace's job id)."""
    from fabric_hpc.scheduler.idorder import id_key
    return id_key(text)


def job_color(j: int) -> str:
    """Colour of the j-th job (palette first, then golden-angle hues away from red)."""
    if j < len(JOB_PALETTE):
        return JOB_PALETTE[j]
    hue = (0.08 + (j - len(JOB_PALETTE)) * 0.618034) % 1.0
    hue = 0.08 + hue * 0.84  # keep clear of red (hue 0)
    r, g, b = colorsys.hls_to_rgb(hue, 0.45 + 0.1 * (j % 3), 0.65)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def state_codes(fab: Fabric, occupancy: dict[str, str] | None) -> tuple[np.ndarray, list[str]]:
    """Per-GPU state codes (0 free, 1 down, 2+j job j) and the job ids in display order.

    Keys are GPU ids (``host/gpuN``) or host names (all GPUs of the host); values are
    ``"free"``, ``"down"`` or a job id. A GPU key wins over its host's key.
    """
    codes = np.zeros(len(fab.gpus), np.int32)
    if not occupancy:
        return codes, []
    if not isinstance(occupancy, dict):
        raise ConfigError(f"occupancy must map GPU ids or hosts to a state, not {type(occupancy).__name__}")
    for key, value in occupancy.items():
        if not isinstance(key, str):
            raise ConfigError(f"occupancy key {key!r}: expected a GPU id or a host name (a string)")
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"occupancy[{key!r}] = {value!r}: expected 'free', 'down' or a job id")
    jobs = _check_ids(sorted({v for v in occupancy.values() if v not in ("free", "down")}, key=_natural_key))
    code_of = {"free": FREE, "down": DOWN, **{j: 2 + i for i, j in enumerate(jobs)}}
    ordered = sorted(occupancy.items(), key=lambda kv: "/" in kv[0])  # hosts first, GPUs override
    for key, value in ordered:
        if key in fab.gpu_pos:
            codes[fab.gpu_pos[key]] = code_of[value]
        elif key in fab.host_pos:
            for gpu in fab.host_gpus(key):
                codes[fab.gpu_pos[gpu]] = code_of[value]
        else:
            raise NotFoundError(f"occupancy names {key!r}, which is neither a GPU nor a host of {fab.name!r}",
                                hint=f"use GPU ids like {fab.gpus[0] if fab.gpus else 'host/gpu0'} or host names")
    return codes, jobs


def plural(n: int, word: str) -> str:
    """``1 host``, ``2 hosts``, ``1,024 GPUs``."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _check_ids(jobs: list[str]) -> list[str]:
    long = [j for j in jobs if len(j) > MAX_JOB_ID]
    if long:
        raise ConfigError(f"job id {long[0][:40]!r}… is {len(long[0]):,} characters long (at most {MAX_JOB_ID})",
                          hint="use shorter job ids; put long descriptions elsewhere")
    return jobs


def codes_of_state(state: ClusterState) -> tuple[np.ndarray, list[str]]:
    """Per-GPU state codes and job order of a :class:`ClusterState`: its owners are numbers, so a
    job named ``free`` or ``down`` stays a job (an occupancy dict cannot tell them apart)."""
    from fabric_hpc.placement.state import DOWN as STATE_DOWN

    nums = state.job_numbers()
    jobs = _check_ids(sorted(nums, key=_natural_key))
    lut = np.zeros(state.known_jobs or 1, np.int32)
    for i, job in enumerate(jobs):
        lut[nums[job]] = 2 + i
    owner = state.owner
    codes = np.where(owner == STATE_DOWN, DOWN, FREE).astype(np.int32)
    held = owner >= 0
    codes[held] = lut[owner[held]]
    return codes, jobs


def _job_stats(fab: Fabric, codes: np.ndarray, jobs: list[str]) -> dict[str, JobStats]:
    idx = fab.index
    leaf = idx.host_path[:, 0]
    real = fab._nvl_real()  # a PCIe-only GPU is in no NVLink domain
    is_real = np.array([n in real for n in fab._nvl_names], bool)
    out = {}
    for j, job in enumerate(jobs):
        sel = np.flatnonzero(codes == 2 + j)
        hosts = np.unique(idx.gpu_host[sel])
        leaves = np.unique(leaf[hosts])
        out[job] = JobStats(gpus=int(sel.size), hosts=int(hosts.size),
                            nvlink_domains=int(np.unique(idx.gpu_nvl[sel][is_real[idx.gpu_nvl[sel]]]).size),
                            leaf_groups=int((leaves >= 0).sum()), color=job_color(j))
    return out


# -- page data -----------------------------------------------------------------------------------
def _host_types(fab: Fabric) -> tuple[list[dict[str, Any]], list[int]]:
    names = list(fab.spec.host_types)
    types = []
    for name in names:
        ht = fab.spec.host_types[name]
        types.append({"name": name, "gpus": ht.gpus, "model": ht.gpu_model, "mem": ht.gpu_memory_gb,
                      "sockets": ht.sockets, "cores": ht.cores_per_socket, "tpc": ht.threads_per_core,
                      "ram": ht.memory_gb, "nics": ht.nics, "nicGbps": ht.nic_gbps,
                      "nvlGbps": ht.nvlink_gbps, "nvsw": ht.nvswitches, "pcie": ht.pcie_gbps,
                      "numa": gpu_numa_of(ht), "rail": [rail_of(ht, i) for i in range(ht.gpus)],
                      "features": list(ht.features)})
    pos = {n: i for i, n in enumerate(names)}
    return types, [pos[fab.host_type_of[h]] for h in fab.hosts]


def _groups(fab: Fabric) -> tuple[list[dict[str, Any]], list[int]]:
    """Switch groups as a forest (parents before children); a fabric without a network gets one."""
    if not fab.groups:
        every = list(range(len(fab.hosts)))
        return [{"n": "all hosts", "l": "hosts", "s": 0, "p": -1, "c": [], "h": every}], [0]
    names = list(fab.groups)
    pos = {n: i for i, n in enumerate(names)}
    out = []
    for name in names:
        g = fab.groups[name]
        out.append({"n": name, "l": g.level, "s": len(g.switches), "p": pos[g.parent] if g.parent else -1,
                    "c": [], "h": [fab.host_pos[h] for h in g.hosts]})
    for i, g in enumerate(out):
        if g["p"] >= 0:
            out[g["p"]]["c"].append(i)
    roots = [i for i, g in enumerate(out) if g["p"] < 0]
    return out, roots


def _nvlink(fab: Fabric) -> tuple[list[dict[str, Any]], list[int]]:
    """NVLink domains: shared multi-host domains by name, else one per host (or none)."""
    doms: list[dict[str, Any]] = []
    pos: dict[str, int] = {}
    gbps = {d.name: d.gbps for d in fab.spec.nvlink_domains}
    per_host = []
    for host in fab.hosts:
        ht = fab.host_type(host)
        shared = fab.nvl_domain_of_host.get(host)
        name = fab.nvlink_domain_of(host)  # None: PCIe-only (or no GPUs), in no NVLink domain
        if name is None:
            per_host.append(-1)
            continue
        if name not in pos:
            pos[name] = len(doms)
            doms.append({"n": name, "shared": shared is not None,
                         "gbps": gbps[name] if shared else ht.nvlink_gbps})
        per_host.append(pos[name])
    return doms, per_host


def report_data(fab: Fabric, codes: np.ndarray, jobs: list[str], stats: dict[str, JobStats],
                title: str, cluster: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON the page renders (compact: one small int per GPU, indices instead of names).

    ``cluster``: the live-cluster section (:mod:`fabric_hpc.slurm.report`), shown below the fabric.
    """
    types, host_type = _host_types(fab)
    groups, roots = _groups(fab)
    doms, host_nvl = _nvlink(fab)
    racks = [fab.rack_of.get(h, "") for h in fab.hosts]
    return {"title": title, "name": fab.name, "description": fab.spec.description or "",
            "levels": fab.levels, "hostTypes": types, "hosts": fab.hosts, "hostType": host_type,
            "hostNvl": host_nvl, "nvl": doms, "racks": racks if any(racks) else None,
            "groups": groups, "roots": roots, "state": codes.tolist(),
            "colors": {"free": FREE_COLOR, "down": DOWN_COLOR},
            "jobs": [{"id": j, **asdict(stats[j])} for j in jobs], "cluster": cluster}


_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def visible(text: str) -> str:
    """Bidi controls shown as ``[U+202E]``: a name cannot reorder itself or the text after it."""
    return _BIDI.sub(lambda m: f"[U+{ord(m.group()):04X}]", text)


def _asset(name: str) -> str:
    return resources.files("fabric_hpc.topology").joinpath(_ASSETS, name).read_text(encoding="utf-8")


_PLACEHOLDER = re.compile(r"__TITLE__|/\*__CSS__\*/|/\*__JS__\*/|__DATA__")


def render_html(data: dict[str, Any]) -> str:
    """Fill the page template with the inline style, script and data."""
    # "<" only occurs inside JSON strings: as \u003c no "</script" or "<!--" can end or confuse the block
    payload = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")
    values = {"__TITLE__": html.escape(visible(data["title"])), "/*__CSS__*/": _asset("report.css"),
              "/*__JS__*/": _asset("report.js"), "__DATA__": payload}
    # one pass over the template: a title or a fabric name that holds a placeholder stays text
    return _PLACEHOLDER.sub(lambda m: values[m.group(0)], _asset("report.html"))


#: Suffixes that name a format (any case): a report file must not be named like another one.
_SUFFIX_FORMAT = {".html": "html", ".htm": "html", ".png": "png", ".svg": "svg", ".svgz": "svgz",
                  ".jpg": "jpeg", ".jpeg": "jpeg", ".pdf": "pdf", ".gif": "gif", ".webp": "webp",
                  ".tif": "tiff", ".tiff": "tiff", ".bmp": "bmp", ".eps": "eps", ".ps": "ps"}
_A_FORMAT = {"html": "an HTML", "png": "a PNG", "svg": "an SVG", "svgz": "a gzip-compressed SVG (.svgz)",
             "jpeg": "a JPEG", "pdf": "a PDF", "gif": "a GIF", "webp": "a WebP", "tiff": "a TIFF",
             "bmp": "a BMP", "eps": "an EPS", "ps": "a PostScript"}


def check_outputs(out_html: str | Path, png: str | Path | None = None, svg: str | Path | None = None) -> None:
    """ConfigError (nothing written) for a report file that cannot be one (``inputs.output_path``) or
    is named like another format: ``svg="x.png"`` would put SVG text in a file viewers read as PNG."""
    from fabric_hpc.inputs import output_path

    for fmt, target in (("html", out_html), ("png", png), ("svg", svg)):
        if target is None:
            continue
        path = output_path(target, what="report file")
        named = _SUFFIX_FORMAT.get(path.suffix.lower())
        if named is not None and named != fmt:
            what = "the HTML page" if fmt == "html" else f"{_A_FORMAT[fmt]} picture"
            raise ConfigError(f"report file {str(target)!r} is named like {_A_FORMAT[named]} file, but "
                              f"{what} is written there",
                              hint=f"name it {path.stem}.{fmt} (or leave out the suffix)")


def write_report(fab: Fabric, out_html: str | Path, *, occupancy: dict[str, str] | None = None,
                 title: str | None = None, png: str | Path | None = None,
                 svg: str | Path | None = None, cluster: dict[str, Any] | None = None,
                 state: ClusterState | None = None) -> ReportSummary:
    """Write the self-contained HTML report (and optionally a static PNG and/or SVG).

    ``occupancy`` maps GPU ids or host names to ``"free"``, ``"down"`` or a job id (None: all free).
    ``state`` (a :class:`~fabric_hpc.placement.state.ClusterState`, instead of ``occupancy``): the
    owners by number, so no job id is mistaken for a state (a job named ``free`` stays a job).
    ``cluster``: the live-cluster section of ``fabric slurm report``. The pictures are drawn in
    memory first; then every file is written to a temporary name and renamed, so a reader never
    sees a partial page or picture, and an error leaves no file.
    Returns the counts the page shows. Raises ConfigError/NotFoundError for bad occupancy.
    """
    check_outputs(out_html, png, svg)  # before any work: nothing is created on a typo
    if state is not None and occupancy is not None:
        raise ConfigError("give the occupancy or a cluster state, not both")
    codes, jobs = codes_of_state(state) if state is not None else state_codes(fab, occupancy)
    stats = _job_stats(fab, codes, jobs)
    title = title or f"Fabric {fab.name}"
    page = render_html(report_data(fab, codes, jobs, stats, title, cluster))
    out = Path(out_html)
    images = {fmt: Path(p) for fmt, p in (("png", png), ("svg", svg)) if p is not None}
    blobs: dict[str, bytes] = {}
    if images:  # drawn before anything is written: a picture that fails leaves no page behind
        from fabric_hpc.topology.report_static import static_images

        blobs = static_images(fab, codes, jobs, stats, title, tuple(images))
    _write(out, page.encode("utf-8"))
    for fmt, blob in blobs.items():
        _write(images[fmt], blob)
    free, down = int((codes == FREE).sum()), int((codes == DOWN).sum())
    return ReportSummary(fabric=fab.name, hosts=len(fab.hosts), gpus=len(fab.gpus), free=free,
                         allocated=len(fab.gpus) - free - down, down=down, jobs=stats, html=str(out),
                         html_bytes=out.stat().st_size, png=str(png) if png else None,
                         svg=str(svg) if svg else None,
                         groups_per_level={lv: sum(g.level == lv for g in fab.groups.values())
                                           for lv in fab.levels})


def _write(path: Path, blob: bytes) -> None:
    """Write one file of the report; an OSError is exit 5 for the disk or permissions, 3 for a
    wrong path (``inputs.os_error``)."""
    from fabric_hpc.inputs import os_error

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, blob)
    except OSError as exc:
        raise os_error(exc, "report file", path) from None


def __getattr__(name: str) -> Any:  # the static picture lives in report_static (imported on use)
    if name == "write_static":
        from fabric_hpc.topology import report_static

        return report_static.write_static
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
