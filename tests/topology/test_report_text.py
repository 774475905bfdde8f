"""User text in the topology report: drawn literally in the static picture (no maths, no lost
legend entries), and no file written when a picture fails."""

from __future__ import annotations

import json

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.topology import open_fabric
from fabric_hpc.topology import report_static
from fabric_hpc.topology.report import state_codes, _job_stats, write_report


def _drawn(text) -> tuple[str, bool]:
    """What matplotlib draws for a Text artist: (string, parsed as maths)."""
    return text._preprocess_math(text.get_text())


def _figure(fab, occ, title="t"):
    codes, jobs = state_codes(fab, occ)
    return report_static._figure(fab, codes, jobs, _job_stats(fab, codes, jobs), title)


def _state(path, jobs: dict[str, str]) -> str:
    path.write_text(json.dumps({"version": 1, "jobs": {j: {"hosts": h} for j, h in jobs.items()}}))
    return str(path)


@pytest.mark.parametrize("job", ["$\\frac$", "a $5 and $6 b", "_fabric", "x\\$y"])
def test_dollar_and_underscore_job_ids_are_drawn_literally(job):
    fab = open_fabric("leaf-spine:hosts=2")
    fig = _figure(fab, {"n1": job}, title=f"title {job}")
    labels = [_drawn(t) for t in fig.legends[0].get_texts()]
    assert (f"{job} (8 GPUs, 1 NVL dom.)", False) in [(s.lstrip("\u200b"), m) for s, m in labels]
    assert (f"title {job}", False) in [_drawn(t) for t in fig.texts]


def test_cli_math_in_state_title_and_description_writes_every_file(tmp_path, capsys):
    from fabric_hpc.topology import dump_spec, generators

    fabric = tmp_path / "f.yaml"
    fabric.write_text(dump_spec(generators.leaf_spine(hosts=2)).replace("description: 2 hosts", "description: $\\frac$ 2"))
    state = _state(tmp_path / "math.json", {"$\\frac$": "n1", "a $5 and $6 b": "n2"})
    out, png, svg = tmp_path / "m.html", tmp_path / "m.png", tmp_path / "m.svg"
    code = main(["topology", "report", str(fabric), "--state", state, "--out", str(out), "--png", str(png),
                 "--svg", str(svg), "--title", "$\\frac$", "--json"])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    assert "Traceback" not in cap.err and json.loads(cap.out)["jobs"].keys() == {"$\\frac$", "a $5 and $6 b"}
    assert out.exists() and png.read_bytes()[:4] == b"\x89PNG" and svg.stat().st_size > 1000


def test_a_failing_picture_leaves_no_page(tmp_path, monkeypatch):
    def boom(*_a, **_k):
        raise ValueError("drawing failed")

    monkeypatch.setattr(report_static, "static_images", boom)
    monkeypatch.setattr(report_static, "_figure", boom)
    with pytest.raises(ValueError):
        write_report(open_fabric("leaf-spine:hosts=2"), tmp_path / "r.html", png=tmp_path / "r.png")
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "r.png").exists()


def test_static_bars_are_drawn_only_where_a_state_has_gpus():
    """One bar per (row, state) that holds GPUs: many jobs on a big fabric draw no empty bars."""
    import numpy as np

    from fabric_hpc.topology import build, generators

    fab = build(generators.superpod(4))
    occ = {h: f"job-{i}" for i, h in enumerate(fab.hosts[:60])}
    occ.update({"su04-h01": "down", "su04-h02": "down"})
    fig = _figure(fab, occ)
    bars = fig.axes[0]
    codes, _ = state_codes(fab, occ)
    names, row_hosts, _ = report_static._static_rows(fab)
    expected = sum(np.unique(codes[[fab.gpu_pos[g] for h in hs for g in fab.host_gpus(h)]]).size for hs in row_hosts)
    widths = [p.get_width() for p in bars.patches]  # down (hatched); jobs and free are one collection:
    widths += [np.ptp(path.vertices[:, 0]) for c in bars.collections for path in c.get_paths()]
    # free in SU 2-4 (SU 1 is full), a job per host, down
    assert len(names) == 4 and len(widths) == expected == 3 + 60 + 1
    assert all(w > 0 for w in widths)


def test_jobs_named_free_or_down_stay_jobs(tmp_path, capsys):
    """The CLI hands the report the cluster state (owners by number), not names that clash with
    the states "free" and "down"."""
    state = _state(tmp_path / "s9.json", {"free": "n1", "down": "n2"})
    code = main(["topology", "report", "leaf-spine:hosts=2", "--state", state, "--out", str(tmp_path / "r.html"),
                 "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert (out["free"], out["allocated"], out["down"]) == (0, 16, 0)
    assert {j: s["gpus"] for j, s in out["jobs"].items()} == {"free": 8, "down": 8}


def test_codes_of_state_matches_occupancy_for_ordinary_ids():
    from fabric_hpc.placement import ClusterState
    from fabric_hpc.topology.report import codes_of_state

    fab = open_fabric("leaf-spine:hosts=4")
    st = ClusterState(fab)
    st.allocate("job-10", fab.host_gpus("n1"))
    st.allocate("job-9", fab.host_gpus("n2")[:3])
    st.allocate("gone", fab.host_gpus("n4"))
    st.release("gone")
    st.set_down(["n3/gpu1"])
    codes, jobs = codes_of_state(st)
    ref_codes, ref_jobs = state_codes(fab, st.occupancy())
    assert jobs == ref_jobs == ["job-9", "job-10"] and codes.tolist() == ref_codes.tolist()


def test_a_huge_job_id_is_one_line_exit_3_and_nothing_is_written(tmp_path, capsys):
    state = _state(tmp_path / "long.json", {"j" * 20_000: "n1"})
    out = tmp_path / "r.html"
    assert main(["topology", "report", "leaf-spine:hosts=2", "--state", state, "--out", str(out)]) == 3
    err = capsys.readouterr().err
    assert "20,000 characters long (at most 256)" in err and "Traceback" not in err and not out.exists()


def test_long_names_are_cut_in_the_picture_and_the_legend_fits():
    fab = open_fabric("leaf-spine:hosts=16")
    occ = {h: f"{i:02d}" + "x" * 254 for i, h in enumerate(fab.hosts)}
    fig = _figure(fab, occ)
    fig.canvas.draw()
    legend = fig.legends[0]
    texts = [t.get_text() for t in legend.get_texts()]
    assert len(texts) == 2 + 14 + 1 and all(len(t) < 70 for t in texts)
    assert texts[2].startswith("00xxx") and "…" in texts[2]
    box = legend.get_window_extent()
    assert box.x0 >= 0 and box.x1 <= fig.bbox.x1 and box.y0 >= 0


def test_bidi_controls_are_shown_in_the_picture():
    assert report_static.mpl_text("job\u202eevil\u2066") == "job[U+202E]evil[U+2066]"


def test_counts_of_one_are_singular(tmp_path, capsys):
    """"1 host, 1 GPU", not "1 hosts, 1 GPUs": the CLI line and the picture."""
    state = _state(tmp_path / "one.json", {"solo": "n1"})
    assert main(["topology", "report", "leaf-spine:hosts=1,gpus=1", "--state", state,
                 "--out", str(tmp_path / "r.html")]) == 0
    assert ": 1 host, 1 GPU, 0 free, 1 allocated, 0 down, 1 job" in capsys.readouterr().out
    fig = _figure(open_fabric("leaf-spine:hosts=1,gpus=1"), {"n1": "solo"})
    assert any(" — 1 host, 1 GPU: 0 free, 1 allocated (1 job), 0 down" in t.get_text() for t in fig.texts)
    # a 1-GPU host has no NVLink: in no NVLink domain (docs/topology.md, "NVLink domains")
    assert "solo (1 GPU, 0 NVL dom.)" in [t.get_text() for t in fig.legends[0].get_texts()]
