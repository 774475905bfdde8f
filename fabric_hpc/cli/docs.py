"""``fabric docs [PAGE]``: the documentation pages shipped with fabric-hpc.

The pages are ``docs/*.md`` of the repository; ``fabric_hpc/docs`` is a link to that folder, and the
wheel carries its ``*.md`` files as package data, so an installed wheel (no checkout) can read the pages
that help texts and ``fix:`` hints name as ``docs/X.md``. ``fabric docs docs/placement.md``,
``fabric docs placement.md`` and ``fabric docs placement`` are the same page.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable

import click

from fabric_hpc.errors import NotFoundError

_SUFFIX = ".md"


def shipped_pages() -> dict[str, Traversable]:
    """Page name (``deploy``) -> the page, for every ``*.md`` in ``fabric_hpc/docs`` (empty when none is)."""
    root = resources.files("fabric_hpc").joinpath("docs")
    if not root.is_dir():
        return {}
    return {item.name[: -len(_SUFFIX)]: item for item in sorted(root.iterdir(), key=lambda i: i.name)
            if item.is_file() and item.name.endswith(_SUFFIX)}


def page_name(ref: str) -> str:
    """``docs/deploy.md#section``, ``deploy.md`` or ``deploy`` -> ``deploy``."""
    name = ref.split("#", 1)[0].strip().replace("\\", "/")
    name = name.rsplit("/", 1)[-1]
    return name[: -len(_SUFFIX)] if name.endswith(_SUFFIX) else name


def title(page: Traversable) -> str:
    """The page's first ``# `` heading (its file name where it has none)."""
    with page.open(encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("# "):
                return line[2:].strip()
    return page.name


def find_page(ref: str) -> Traversable:
    """The shipped page ``ref`` names; NotFoundError (exit 3) listing the pages where none is."""
    pages = shipped_pages()
    if not pages:
        raise NotFoundError("this fabric-hpc has no documentation pages",
                            hint="reinstall fabric-hpc from its wheel (it ships docs/*.md)")
    page = pages.get(page_name(ref))
    if page is None:
        raise NotFoundError(f"no documentation page {ref!r}; the pages: {', '.join(pages)}",
                            hint="fabric docs PAGE, e.g. fabric docs deploy (or docs/deploy.md)")
    return page


@click.command("docs")
@click.argument("page", required=False)
@click.option("--path", "show_path", is_flag=True,
              help="Print where the page (or, without PAGE, the folder of pages) is installed.")
def group(page: str | None, show_path: bool) -> None:
    """The documentation pages shipped with fabric (the repository's docs/*.md): without PAGE, list
    them; with PAGE, print it as plain Markdown to stdout. PAGE is a name as hints write it:
    docs/deploy.md, deploy.md or deploy."""
    if page is not None:
        found = find_page(page)
        click.echo(str(found) if show_path else found.read_text(encoding="utf-8"), nl=show_path)
        return
    pages = shipped_pages()
    if not pages:
        find_page("")  # raises: this install has no pages
    if show_path:
        click.echo(str(resources.files("fabric_hpc").joinpath("docs")))
        return
    width = max(map(len, pages))
    lines = [f"{name:<{width}}  {title(item)}" for name, item in pages.items()]
    click.echo("\n".join(lines) + "\n\nfabric docs PAGE prints one (e.g. fabric docs deploy); "
               "--path shows where it is installed.")
