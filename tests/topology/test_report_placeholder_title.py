"""A title or a fabric name holding one of the page template's placeholders (``__DATA__``, ``/*__JS__*/``)
stays text: the template was filled one placeholder after the other, the title first, so the data or the
script went into ``<title>`` and the page stayed blank ("__DATA__" is not valid JSON)."""

from __future__ import annotations

import pytest

from fabric_hpc.topology import open_fabric
from fabric_hpc.topology.report import write_report
from tests.topology.test_report_browser import _open, driver  # noqa: F401  (the fixture)

TITLES = ["x __DATA__ y", "/*__JS__*/", "/*__CSS__*/ __TITLE__"]


@pytest.mark.parametrize("title", TITLES)
def test_the_page_is_filled_once_whatever_the_title(tmp_path, title: str) -> None:
    write_report(open_fabric("leaf-spine:hosts=4"), tmp_path / "r.html", title=title)
    page = (tmp_path / "r.html").read_text()
    head = page[:page.index("</title>")]
    assert head.endswith(f"<title>{title}") and page.count('id="fabric-data">{') == 1


@pytest.mark.browser
@pytest.mark.parametrize("title", TITLES)
def test_the_page_renders_in_chromium_with_the_title_as_text(driver, tmp_path,  # noqa: F811
                                                             title: str) -> None:
    write_report(open_fabric("leaf-spine:hosts=4"), tmp_path / "r.html", title=title)
    assert _open(driver, tmp_path / "r.html") == []
    assert driver.title == title
    assert driver.find_elements("css selector", "#tree .group")  # the fabric is drawn
