"""The topology report in a real headless Chromium (Debian ``chromium`` + ``chromium-driver``).

Loads each page from a file:// URL with the network-quiet flags of docs/report.md, reads the
browser console, checks the counts in the DOM against the library's summary, clicks groups,
GPUs, jobs and the search box, and saves screenshots under ``test-artifacts/topology-report/``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from fabric_hpc.topology import build, generators
from fabric_hpc.topology.report import write_report
from tests.real import require_commands
from tests.topology.test_report import (ARTIFACTS, nvl72_occupancy, superpod4_occupancy,
                                        superpod64_occupancy)

pytestmark = pytest.mark.browser

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1500,1000")


@pytest.fixture(scope="module")
def driver():
    require_commands("chromium", "chromium", "chromedriver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="fabric-report-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # an explicit driver path: selenium-manager never runs (it would try to download one)
    drv = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _open(drv, path: Path) -> list[dict]:
    from selenium.webdriver.support.ui import WebDriverWait

    drv.set_window_size(1500, 1000)
    drv.get(path.resolve().as_uri())
    WebDriverWait(drv, 20).until(lambda d: d.execute_script("return document.body.dataset.ready") == "1")
    return [e for e in drv.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]


def _count(drv, name: str) -> int:
    return int(drv.find_element("id", f"count-{name}").text.replace(",", ""))


def _counts_match(drv, s) -> None:
    assert _count(drv, "hosts") == s.hosts
    assert _count(drv, "gpus") == s.gpus
    assert _count(drv, "free") == s.free
    assert _count(drv, "allocated") == s.allocated
    assert _count(drv, "down") == s.down
    assert _count(drv, "jobs") == len(s.jobs)


def _head(drv, group: str):
    return drv.find_element("css selector", f'.group[data-group="{group}"] > .ghead')


def _group(drv, group: str):
    return drv.find_element("css selector", f'.group[data-group="{group}"]')


def _shoot(drv, name: str, full: bool = False) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    if full:
        height = drv.execute_script("return document.body.scrollHeight")
        drv.set_window_size(1500, min(height + 40, 6000))
    path = ARTIFACTS / f"browser-{name}.png"
    assert drv.save_screenshot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return path


def test_console_errors_are_seen(driver, tmp_path):
    """The no-error checks below mean something: a throwing page is reported."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>'
                   '<script>console.error("said-456"); throw new Error("boom-123")</script></body></html>')
    driver.get(bad.as_uri())
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert any("boom-123" in e["message"] for e in errors)
    assert any("said-456" in e["message"] for e in errors)


def test_superpod4_page(driver, superpod4, tmp_path):
    out = tmp_path / "superpod-4su.html"
    s = write_report(superpod4, out, occupancy=superpod4_occupancy(), title="DGX H100 SuperPOD <4 SU>")
    assert _open(driver, out) == []
    assert driver.title == "DGX H100 SuperPOD <4 SU>"
    _counts_match(driver, s)
    # small fabric: everything open down to the GPUs
    assert len(driver.find_elements("css selector", ".host")) == 128
    assert len(driver.find_elements("css selector", ".gpu")) == 1024
    assert len(driver.find_elements("css selector", "tr.job-row")) == 4
    _shoot(driver, "superpod-4su")
    _shoot(driver, "superpod-4su-full", full=True)
    driver.set_window_size(1500, 1000)

    # collapse and re-expand a leaf group
    _head(driver, "su01-leaf").click()
    assert "open" not in _group(driver, "su01-leaf").get_attribute("class")
    assert len(_group(driver, "su01-leaf").find_elements("css selector", ".host")) == 0
    assert _group(driver, "su01-leaf").find_elements("css selector", "canvas.mini")
    _head(driver, "su01-leaf").click()
    assert len(_group(driver, "su01-leaf").find_elements("css selector", ".host")) == 32

    # click a GPU: details name its model, NUMA, rail switch, NVLink domain and job
    driver.find_element("css selector", '.host[data-host="su03-h02"] .gpu[data-g="%d"]'
                        % superpod4.gpu_pos["su03-h02/gpu1"]).click()
    details = driver.find_element("id", "details").text
    for words in ("su03-h02/gpu1", "job-7", "H100-SXM5-80GB", "NUMA node", "su03-leaf-1", "su03-h02"):
        assert words in details

    # hover a rail switch: exactly the GPUs on that rail in its SU light up (one per host)
    from selenium.webdriver.common.action_chains import ActionChains

    switch = driver.find_element("css selector", '.group[data-group="su02-leaf"] .sw[data-sw="3"]')
    ActionChains(driver).move_to_element(switch).perform()
    lit = _group(driver, "su02-leaf").find_elements("css selector", ".railmode .gpu.hl")
    assert len(lit) == 32
    assert {int(g.get_attribute("data-r")) for g in lit} == {3}
    assert "Switch su02-leaf-3" in driver.find_element("id", "tip").text
    _shoot(driver, "superpod-4su-rail-hover")

    # focus a job: every other GPU is dimmed
    driver.find_element("css selector", 'tr.job-row[data-job="job-102"]').click()
    bright = driver.find_elements("css selector", ".gpu:not(.dim)")
    assert len(bright) == s.jobs["job-102"].gpus
    _shoot(driver, "superpod-4su-job-focus")
    driver.find_element("css selector", 'tr.job-row[data-job="job-102"]').click()
    assert driver.find_elements("css selector", ".gpu.dim") == []
    assert [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")] == []


@pytest.mark.slow
def test_superpod64_opens_aggregated_and_expands(driver, tmp_path):
    fab = build(generators.superpod(64))
    out = tmp_path / "superpod-64su.html"
    s = write_report(fab, out, occupancy=superpod64_occupancy(fab))
    assert _open(driver, out) == []
    _counts_match(driver, s)
    # aggregated: core open, 16 spine groups collapsed with bars and mini maps, no host boxes yet
    assert len(driver.find_elements("css selector", '.group[data-level="spine"]')) == 16
    assert len(driver.find_elements("css selector", "canvas.mini")) == 16
    assert driver.find_elements("css selector", ".host") == []
    _shoot(driver, "superpod-64su")
    _head(driver, "spine01").click()
    assert "open" in _group(driver, "spine01").get_attribute("class")
    assert len(_group(driver, "spine01").find_elements("css selector", '.group[data-level="leaf"]')) == 4
    _head(driver, "su02-leaf").click()
    assert len(_group(driver, "su02-leaf").find_elements("css selector", ".host")) == 32
    assert len(_group(driver, "su02-leaf").find_elements("css selector", ".gpu")) == 256
    driver.execute_script("arguments[0].scrollIntoView()", _group(driver, "spine01"))
    _shoot(driver, "superpod-64su-expanded")

    # search opens the path down to a host in a collapsed group
    box = driver.find_element("id", "search")
    box.send_keys("su37-h05/gpu6\n")
    assert _group(driver, "spine10").get_attribute("class").split().count("open") == 1
    assert len(_group(driver, "su37-leaf").find_elements("css selector", ".host")) == 32
    assert "su37-h05/gpu6" in driver.find_element("id", "details").text
    box.clear()
    box.send_keys("nosuch-host\n")
    assert "no host" in driver.find_element("id", "search-msg").text
    # every GPU drawn at once still works (the slow path an admin may take)
    driver.find_element("id", "expand-all").click()
    assert len(driver.find_elements("css selector", ".host")) == 2048
    assert len(driver.find_elements("css selector", ".gpu.dn")) == s.down
    driver.find_element("id", "collapse-all").click()
    assert driver.find_elements("css selector", ".host") == []
    assert [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")] == []


def test_nvl72_page_shows_domains_and_rails(driver, tmp_path):
    fab = build(generators.nvl72(racks=2))
    out = tmp_path / "nvl72-2r.html"
    s = write_report(fab, out, occupancy=nvl72_occupancy())
    assert _open(driver, out) == []
    _counts_match(driver, s)
    domains = driver.find_elements("css selector", ".nvl")
    assert [d.get_attribute("data-nvl") for d in domains] == ["r001", "r002"]
    assert all(len(d.find_elements("css selector", ".host")) == 18 for d in domains)
    assert len(driver.find_elements("css selector", ".rails .sw")) == 4
    driver.find_element("css selector", '.host[data-host="r002-h12"]').click()
    details = driver.find_element("id", "details").text
    assert "GB200" in details and "r002" in details and "down" in details
    _shoot(driver, "nvl72-2r")
    assert [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")] == []


def test_long_job_ids_are_cut_with_the_whole_name_on_hover(driver, tmp_path):
    """A 256-character job id keeps the jobs table inside its panel; its title holds the whole id."""
    fab = build(generators.leaf_spine(hosts=4))
    long_id = "j" * 256  # the longest id the report takes
    write_report(fab, tmp_path / "r.html", occupancy={"n1": long_id, "n2": "short"})
    assert _open(driver, tmp_path / "r.html") == []
    scroll = driver.find_element("css selector", "#jobs .scroll")
    assert driver.execute_script("return arguments[0].scrollWidth <= arguments[0].clientWidth", scroll)
    cell = driver.find_element("css selector", f'#jobs tr[data-job="{long_id}"] .nm')
    assert cell.get_attribute("title") == long_id
    assert driver.execute_script("return arguments[0].scrollWidth > arguments[0].clientWidth", cell)  # cut


def test_bidi_controls_in_names_are_shown_not_applied(driver, tmp_path):
    """U+202E would show job "job\u202eevil" as "joblive" and reverse the subtitle after the
    description: the page shows the control as [U+202E] instead."""
    fab = build(generators.leaf_spine(hosts=2).model_copy(update={"description": "pod \u202eA"}))
    write_report(fab, tmp_path / "r.html", occupancy={"n1": "job\u202eevil"}, title="t\u202ex")
    assert _open(driver, tmp_path / "r.html") == []
    assert driver.find_element("css selector", "#jobs tr.job-row .nm").text == "job[U+202E]evil"
    assert driver.find_element("id", "subtitle").text == "pod [U+202E]A · switch levels: leaf → spine"
    assert driver.find_element("id", "title").text == "t[U+202E]x" and driver.title == "t[U+202E]x"


@pytest.mark.parametrize("ref, boxes", [("leaf-spine:hosts=4096,hosts_per_leaf=1", 1),
                                        ("leaf-spine:hosts=96,hosts_per_leaf=4", 1 + 24)])
def test_a_root_with_more_child_boxes_than_the_budget_opens_collapsed(driver, tmp_path, ref, boxes):
    """4,096 one-host leaves: the page opens on the root's mini map, not 4,096 leaf boxes (also
    after Collapse all); 24 leaves still open on their boxes."""
    from fabric_hpc.topology import open_fabric

    write_report(open_fabric(ref), tmp_path / "r.html")
    assert _open(driver, tmp_path / "r.html") == []
    assert len(driver.find_elements("css selector", ".group")) == boxes
    driver.find_element("id", "collapse-all").click()
    assert len(driver.find_elements("css selector", ".group")) == boxes
    if boxes == 1:
        assert driver.find_elements("css selector", ".group > .gbody > canvas.mini")


def test_group_headers_say_1_host_1_gpu(driver, tmp_path):
    from fabric_hpc.topology import open_fabric

    write_report(open_fabric("leaf-spine:hosts=1,gpus=1"), tmp_path / "r.html")
    assert _open(driver, tmp_path / "r.html") == []
    metas = [m.text for m in driver.find_elements("css selector", ".ghead .meta")]
    assert metas and all("1 host · 1 GPU" in m for m in metas), metas


@pytest.mark.parametrize("ref, search, sample, host", [
    ("leaf-spine:hosts=4", "e.g. n3 or n3/gpu7)", "leaf1 leaf switch", "host = its own NVLink domain (NVSwitch)"),
    ("nvl72:racks=1", "e.g. r001-h10 or r001-h10/gpu3)", None, "host"),
])
def test_legend_and_search_use_this_fabrics_names(driver, tmp_path, ref, search, sample, host):
    """No fixed su02-h07 / leaf-3 examples: the fabric's own host and switch names, and the
    own-NVLink-domain line only where a host is its own domain."""
    from fabric_hpc.topology import open_fabric

    write_report(open_fabric(ref), tmp_path / "r.html")
    assert _open(driver, tmp_path / "r.html") == []
    assert search in driver.find_element("id", "search").get_attribute("placeholder")
    legend = driver.find_element("id", "legend").text
    assert "su02" not in legend and "leaf-3" not in legend
    lines = legend.splitlines()
    assert host in lines
    if sample:  # the switch name is its own line (an inline box)
        name, words = sample.split(" ", 1)
        assert name in lines and words + "; hover to see its GPUs" in legend
