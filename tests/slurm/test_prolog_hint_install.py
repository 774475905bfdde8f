"""The TaskProlog's "no trusted topology file" fix names the Prolog an install has (the one
`fabric slurm install` writes), not the source tree's plugins/ folder."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.slurm.prolog import topo_file
from fabric_hpc.testing.nccl_facts import write_facts
from fabric_hpc.topology import build, generators
from tests.real import require_real
from tests.slurm.prolog_site import make_site

HOST = "su01-h01"


@pytest.fixture()
def site() -> Iterator[dict]:
    require_real("slurm", os.geteuid() == 0, "the facts file is trusted only when root's: run as root")
    fab = build(generators.superpod(1))
    base, cfg = make_site(fab, "fabric-prolog-hint-")
    yield {"fab": fab, "topo_dir": Path(cfg["topo_dir"])}
    shutil.rmtree(base)


def test_no_trusted_file_names_the_installed_prolog(site: dict) -> None:
    write_facts(site["topo_dir"], site["fab"], HOST)  # discovered, but no Prolog has written the XML
    with pytest.raises(ConfigError, match="no trusted topology file") as info:
        topo_file(site["fab"], HOST, site["topo_dir"], None)
    hint = info.value.hint or ""
    assert "plugins/" not in hint, hint
    assert "fabric slurm install" in hint and "fabric slurm topo-files" in hint and "user_topo_dir" in hint
