"""A very long title (``--title``, or a fabric named with thousands of characters) is cut after two
lines in the page header, the whole text on hover: it filled the first screen before (3,000
characters: 33 lines), pushing the counts and the tree out of view. In a real headless Chromium."""

from __future__ import annotations

import pytest

from fabric_hpc.topology import build, generators
from fabric_hpc.topology.report import write_report
from tests.topology.test_report_browser import _open, driver  # noqa: F401  (the fixture)

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("title", ["T" * 3000, "word " * 600])
def test_a_long_title_takes_at_most_two_lines(driver, tmp_path, title):  # noqa: F811
    write_report(build(generators.leaf_spine(4)), tmp_path / "r.html", title=title)
    assert _open(driver, tmp_path / "r.html") == []
    h1 = driver.find_element("id", "title")
    line = float(driver.execute_script("return parseFloat(getComputedStyle(arguments[0]).lineHeight)", h1))
    assert h1.size["height"] <= 2 * line + 2, (h1.size, line)
    assert h1.get_attribute("title") == title  # the whole title on hover
    assert driver.find_element("id", "count-hosts").location["y"] < 200
    assert driver.find_element("id", "tree").location["y"] < 400


def test_a_short_title_is_whole(driver, tmp_path):  # noqa: F811
    write_report(build(generators.leaf_spine(4)), tmp_path / "r.html", title="Pod A")
    assert _open(driver, tmp_path / "r.html") == []
    assert driver.find_element("id", "title").text == "Pod A"
