"""A slurmrestd restarted with only a version fabric does not speak (``-d data_parser/v0.0.39``) gets
the clear error, not the bare 404 of the old version's path; the fix names the data_parser option."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fabric_hpc.slurm.contract import SlurmError
from fabric_hpc.slurm.rest_backend import RestClient, choose_version
from tests.slurm.test_rest_renegotiate import VersionedServer

CLEAR = r"slurmrestd offers v0.0.39; fabric speaks v0.0.38 and v0.0.40 or later"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[VersionedServer]:
    srv = VersionedServer(tmp_path / "restd.sock", "v0.0.44")
    yield srv
    srv.close()


def test_a_running_client_says_the_offered_version_is_not_spoken(server: VersionedServer) -> None:
    client = RestClient(f"unix:{server.path}", token="t")
    assert client.jobs() == [] and client.version == "v0.0.44"
    server.version = "v0.0.39"  # restarted with -d data_parser/v0.0.39
    with pytest.raises(SlurmError, match=CLEAR) as info:
        client.jobs()
    assert "-d data_parser/v0.0.40" in (info.value.hint or "")
    assert "404" not in info.value.message


def test_a_fresh_client_names_the_data_parser_option(server: VersionedServer) -> None:
    server.version = "v0.0.39"
    with pytest.raises(SlurmError, match=CLEAR) as info:
        RestClient(f"unix:{server.path}", token="t").jobs()
    assert "-d data_parser/v0.0.40" in (info.value.hint or "")


def test_no_slurm_endpoints_at_all_names_the_openapi_plugin() -> None:
    with pytest.raises(SlurmError, match="no /slurm/ endpoints") as info:
        choose_version(["/openapi/v3"])
    assert "-s openapi/slurmctld" in (info.value.hint or "")
