"""The topology report: self-contained HTML, counts, occupancy validation, static PNG/SVG.

The browser half (real headless Chromium) is in test_report_browser.py; the scenario builders
here are shared with it.
"""

from __future__ import annotations

import json
import re
import struct
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError, NotFoundError
from fabric_hpc.hostlist import expand
from fabric_hpc.topology import build, generators
from fabric_hpc.topology.report import JOB_PALETTE, job_color, state_codes, write_report

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "topology-report"


# -- scenarios (shared with the browser tests) ------------------------------------------------------
def superpod4_occupancy() -> dict[str, str]:
    """Four jobs (one spans two SUs, one uses half of each host), two down hosts, one down GPU."""
    occ = {h: "job-101" for h in expand("su01-h[01-16]")}
    occ.update({h: "job-102" for h in expand("su01-h[17-20],su02-h[01-04]")})
    occ.update({f"{h}/gpu{g}": "job-7" for h in expand("su03-h[01-08]") for g in range(4)})
    occ.update({h: "job-2048" for h in expand("su02-h[10-29]")})
    occ.update({"su02-h07": "down", "su04-h11": "down", "su03-h20/gpu3": "down"})
    return occ


def nvl72_occupancy() -> dict[str, str]:
    occ = {h: "train-a" for h in expand("r001-h[01-18]")}
    occ.update({h: "infer-b" for h in expand("r002-h[01-06]")})
    occ["r002-h12"] = "down"
    return occ


def superpod64_occupancy(fab) -> dict[str, str]:
    """40 jobs packed from the first host on (1..64 hosts each), plus 12 down hosts spread out."""
    occ: dict[str, str] = {}
    pos = 0
    sizes = [1, 2, 4, 8, 16, 32, 64]
    for j in range(40):
        n = sizes[(j * 5) % len(sizes)]
        occ.update({h: f"job-{j}" for h in fab.hosts[pos:pos + n]})
        pos += n + (3 if j % 3 == 0 else 0)
    occ.update({fab.hosts[i]: "down" for i in range(700, 2048, 113)})
    return occ


# -- HTML ----------------------------------------------------------------------------------------
def _external_refs(page: str) -> list[str]:
    pattern = r"""(?:src|href)\s*=\s*["']?(?!data:|#)[^"'\s>]+|@import|url\((?!["']?data:)|https?://"""
    return re.findall(pattern, page, flags=re.I)


def test_superpod_report_is_self_contained_and_counts_match(superpod4, tmp_path):
    occ = superpod4_occupancy()
    out = tmp_path / "r.html"
    s = write_report(superpod4, out, occupancy=occ, title="4 SU <pod> & co")
    page = out.read_text()
    assert _external_refs(page) == []
    assert "<title>4 SU &lt;pod&gt; &amp; co</title>" in page
    assert (s.hosts, s.gpus) == (128, 1024)
    assert s.down == 8 + 8 + 1
    assert s.allocated == 16 * 8 + 8 * 8 + 8 * 4 + 20 * 8
    assert s.free + s.allocated + s.down == s.gpus
    assert s.html_bytes == out.stat().st_size
    assert list(s.jobs) == ["job-7", "job-101", "job-102", "job-2048"]  # natural order
    assert s.jobs["job-102"].leaf_groups == 2 and s.jobs["job-102"].hosts == 8
    assert s.jobs["job-7"].gpus == 32 and s.jobs["job-7"].nvlink_domains == 8
    assert len({j.color for j in s.jobs.values()}) == 4
    data = json.loads(re.search(r'id="fabric-data">(.*?)</script>', page, re.S).group(1))
    assert len(data["state"]) == 1024 and len(data["hosts"]) == 128
    assert {g["n"] for g in data["groups"]} == {"spine", "su01-leaf", "su02-leaf", "su03-leaf", "su04-leaf"}


def test_script_breaking_strings_are_escaped(tmp_path):
    fab = build(generators.leaf_spine(hosts=4, hosts_per_leaf=2))
    out = tmp_path / "r.html"
    write_report(fab, out, occupancy={"n1": "</script><b>x", "n2": "<!--<script>"}, title="</script>")
    page = out.read_text()
    assert page.count("</script>") == 2  # only the two real closing tags
    assert "<!--" not in page.split('id="fabric-data">', 1)[1]  # would make the parser run past the block
    data = json.loads(re.search(r'id="fabric-data">(.*?)</script>', page, re.S).group(1))
    assert {j["id"] for j in data["jobs"]} == {"</script><b>x", "<!--<script>"}


def test_empty_occupancy_is_all_free_and_fabric_without_network(tmp_path):
    spec = generators.leaf_spine(hosts=3, hosts_per_leaf=3).model_copy(update={"network": None})
    fab = build(spec)
    s = write_report(fab, tmp_path / "r.html")
    assert (s.free, s.allocated, s.down, s.jobs) == (24, 0, 0, {})
    data = re.search(r'id="fabric-data">(.*?)</script>', (tmp_path / "r.html").read_text(), re.S).group(1)
    assert json.loads(data)["groups"][0]["n"] == "all hosts"


def test_occupancy_gpu_key_overrides_host_key(superpod4):
    codes, jobs = state_codes(superpod4, {"su01-h01/gpu3": "down", "su01-h01": "job-1"})
    host = [superpod4.gpu_pos[g] for g in superpod4.host_gpus("su01-h01")]
    assert jobs == ["job-1"]
    assert codes[host].tolist() == [2, 2, 2, 1, 2, 2, 2, 2]
    assert int((codes != 0).sum()) == 8


@pytest.mark.parametrize("occ, error, words", [
    ({"su09-h01": "job-1"}, NotFoundError, "neither a GPU nor a host"),
    ({"su01-h01/gpu8": "job-1"}, NotFoundError, "su01-h01/gpu8"),
    ({"su01-h01": ""}, ConfigError, "expected 'free', 'down' or a job id"),
    ({"su01-h01": 3}, ConfigError, "expected 'free', 'down' or a job id"),
    (["su01-h01"], ConfigError, "must map GPU ids"),
])
def test_bad_occupancy_is_rejected(superpod4, tmp_path, occ, error, words):
    with pytest.raises(error, match=re.escape(words)):
        write_report(superpod4, tmp_path / "r.html", occupancy=occ)
    assert not (tmp_path / "r.html").exists()


def test_unwritable_output_is_a_config_error(superpod4, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match=f"'{re.escape(str(blocker))}' is not a directory"):  # a file, not a dir
        write_report(superpod4, blocker / "r.html")


def test_job_colours_are_distinct_and_never_red():
    colours = [job_color(j) for j in range(200)]
    assert colours[:len(JOB_PALETTE)] == list(JOB_PALETTE)
    assert len(set(colours)) == len(colours)
    for c in colours:
        r, g, b = (int(c[i:i + 2], 16) for i in (1, 3, 5))
        assert not (r > 180 and g < 90 and b < 90), c  # down is red


def _lab(colour: str) -> tuple[float, float, float]:
    """sRGB hex → CIELAB (D65)."""
    rgb = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = (((c + 0.055) / 1.055) ** 2.4 if c > 0.04045 else c / 12.92 for c in rgb)
    xyz = ((0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047, 0.2126 * r + 0.7152 * g + 0.0722 * b,
           (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883)
    fx, fy, fz = (t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116 for t in xyz)
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def test_job_palette_colours_are_far_apart_and_from_free_and_down():
    """Kelly's colours: every pair at least CIE76 dE 15 apart, each 20 from free grey and down red."""
    from itertools import combinations

    from fabric_hpc.topology.report import DOWN_COLOR, FREE_COLOR

    def de(a: str, b: str) -> float:
        return sum((x - y) ** 2 for x, y in zip(_lab(a), _lab(b))) ** 0.5

    assert len(JOB_PALETTE) >= 19
    assert min(de(a, b) for a, b in combinations(JOB_PALETTE, 2)) >= 15
    assert min(de(c, s) for c in JOB_PALETTE for s in (FREE_COLOR, DOWN_COLOR)) >= 20


def test_nvl72_job_stays_in_one_domain(tmp_path):
    fab = build(generators.nvl72(racks=2))
    s = write_report(fab, tmp_path / "r.html", occupancy=nvl72_occupancy())
    assert (s.hosts, s.gpus, s.allocated, s.down) == (36, 144, 96, 4)
    assert s.jobs["train-a"].nvlink_domains == 1 and s.jobs["train-a"].gpus == 72
    page = (tmp_path / "r.html").read_text()
    data = json.loads(re.search(r'id="fabric-data">(.*?)</script>', page, re.S).group(1))
    assert [d["n"] for d in data["nvl"]] == ["r001", "r002"] and all(d["shared"] for d in data["nvl"])


# -- static picture ----------------------------------------------------------------------------
def _png_size(path: Path) -> tuple[int, int]:
    blob = path.read_bytes()
    assert blob[:8] == b"\x89PNG\r\n\x1a\n"
    assert blob[12:16] == b"IHDR"
    return struct.unpack(">II", blob[16:24])


def _svg_root(path: Path) -> ET.Element:
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    return root


def test_static_png_and_svg(superpod4, tmp_path):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    png, svg = ARTIFACTS / "static-superpod-4su.png", ARTIFACTS / "static-superpod-4su.svg"
    s = write_report(superpod4, tmp_path / "r.html", occupancy=superpod4_occupancy(), png=png, svg=svg)
    assert (s.png, s.svg) == (str(png), str(svg))
    width, height = _png_size(png)
    assert width > 1000 and height > 200
    text = "".join(_svg_root(svg).itertext())
    # matplotlib writes text as paths by default; the legend labels live in the SVG as comments/ids
    assert svg.stat().st_size > 10_000 and "job-2048" in svg.read_text() + text


@pytest.mark.slow
def test_superpod64_size_and_time(tmp_path):
    """2,048 hosts: the page stays small (aggregated data, one small int per GPU)."""
    t0 = time.perf_counter()
    fab = build(generators.superpod(64))
    t_build = time.perf_counter() - t0
    occ = superpod64_occupancy(fab)
    t0 = time.perf_counter()
    s = write_report(fab, tmp_path / "r.html", occupancy=occ)
    t_html = time.perf_counter() - t0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    write_report(fab, tmp_path / "r2.html", occupancy=occ, png=ARTIFACTS / "static-superpod-64su.png",
                 svg=ARTIFACTS / "static-superpod-64su.svg")
    t_all = time.perf_counter() - t0
    (ARTIFACTS / "superpod-64su-timing.json").write_text(json.dumps(
        {"html_bytes": s.html_bytes, "build_s": t_build, "html_s": t_html, "html_png_svg_s": t_all}, indent=1))
    assert (s.hosts, s.gpus, len(s.jobs)) == (2048, 16384, 40)
    assert s.down == 12 * 8
    assert s.html_bytes < 400_000, s.html_bytes
    _png_size(ARTIFACTS / "static-superpod-64su.png")
    _svg_root(ARTIFACTS / "static-superpod-64su.svg")


def test_an_output_that_is_an_input_or_another_output_is_refused(tmp_path, capsys):
    """``--out`` on the fabric file itself, or ``--png`` on ``--out``, would overwrite it: refused
    before anything is written (also for topology import's --out/--host-map over the CSV)."""
    from fabric_hpc.cli.main import main
    from fabric_hpc.topology import save_spec

    spec = tmp_path / "ft.yaml"
    save_spec(generators.fat_tree(k=4), spec)
    before = spec.read_bytes()
    assert main(["topology", "report", str(spec), "--out", str(spec)]) == 3
    assert "is the input FABRIC" in capsys.readouterr().err and spec.read_bytes() == before
    out = tmp_path / "b.html"
    assert main(["topology", "report", str(spec), "--out", str(out), "--png", str(out)]) == 3
    assert "--png" in capsys.readouterr().err and not out.exists()
    csv = tmp_path / "nodes.csv"
    csv.write_text("x\n")
    assert main(["topology", "import", str(csv), "--out", str(csv)]) == 3
    assert "is the input FILE" in capsys.readouterr().err and csv.read_text() == "x\n"


@pytest.mark.parametrize("err, needle", [
    (PermissionError(13, "Permission denied"), "report file '{path}': Permission denied"),
    (OSError(28, "No space left on device"), "cannot write file '{path}': the disk is full"),
    (OSError(30, "Read-only file system"), "report file '{path}': Read-only file system"),
])
def test_a_disk_or_permission_error_writing_the_report_is_exit_5(tmp_path, capsys, monkeypatch, err, needle):
    """`topology report base.yaml --out /sys/x.html` was exit 3 ("choose a writable path"): the path
    is fine, the system refused the write (inputs.os_error: 5 for the disk or permissions)."""
    from fabric_hpc.cli.main import main
    from fabric_hpc.topology import report as report_module

    def refuse(path, blob):  # noqa: ARG001
        raise err

    monkeypatch.setattr(report_module, "write_atomic", refuse)
    out = tmp_path / "r.html"
    assert main(["topology", "report", "leaf-spine:hosts=2", "--out", str(out)]) == 5
    text = capsys.readouterr().err
    assert needle.format(path=out) in text and "fix:" in text and "choose a writable path" not in text
