"""The TaskProlog's "no trusted topology file" fix names the Prolog an install has (the one
`fabric slurm install` writes), not the source tree's plugins/ folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.slurm.prolog import topo_file
from fabric_hpc.testing.nccl_facts import write_facts
from tests.slurm.prolog_site import superpod_site

HOST = "su01-h01"


@pytest.fixture()
def site() -> Iterator[dict]:
    with superpod_site("fabric-prolog-hint-", "facts") as (fab, _, cfg):
        yield {"fab": fab, "topo_dir": Path(cfg["topo_dir"])}


def test_no_trusted_file_names_the_installed_prolog(site: dict) -> None:
    write_facts(site["topo_dir"], site["fab"], HOST)  # discovered, but no Prolog has written the XML
    with pytest.raises(ConfigError, match="no trusted topology file") as info:
        topo_file(site["fab"], HOST, site["topo_dir"], None)
    hint = info.value.hint or ""
    assert "plugins/" not in hint, hint
    assert "fabric slurm install" in hint and "fabric slurm topo-files" in hint and "user_topo_dir" in hint
