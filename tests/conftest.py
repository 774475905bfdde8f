"""Shared fixtures: the live Slurm test cluster (see docs/testing.md).

Every test that touches Slurm runs once per Slurm of the test matrix (``slurm_install``, ids such
as ``slurm-22.05`` and ``slurm-25.11``): Debian's packaged Slurm and each install prefix of
``FABRIC_SLURM_PREFIXES`` (default ``/opt/slurm-25.11``). ``FABRIC_SLURM_TIERS=25.11`` (or
``-k slurm-25.11``) runs one tier.
``slurm_cluster`` is one session-wide cluster built from a fabric model (16 hosts n1..n16 under
four leaf switches, 8 fake GPUs and 8 CPUs each). Tests that need their own ``slurm.conf``
(job_submit Lua, prologs, jobcomp, preemption) ask ``slurm_cluster_factory`` for one; every
cluster is stopped at the end of the session, also when tests fail or the run is interrupted.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fabric_hpc.events import LOGGER_NAME
from fabric_hpc.testing._installs import SlurmInstall
from tests.real import require_real
from tests.slurm_matrix import TIERS, require_install, tier_header, tiers_within
from tests.strict_json import strict_json_outputs  # noqa: F401 - autouse: every --json output is strict JSON
from tests.report_text import pytest_report_to_serializable  # noqa: F401 - xdist: reports as UTF-8


def pytest_report_header(config: pytest.Config) -> list[str]:
    return tier_header()


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``@pytest.mark.slurm_min(25, 5)`` / ``slurm_max(25, 11)``: parametrize ``slurm_install`` over the
    tiers of those Slurm releases only (this parametrize mark takes precedence over the fixture's params)."""
    low, high = (metafunc.definition.get_closest_marker(name) for name in ("slurm_min", "slurm_max"))
    if low is None and high is None:
        return
    if "slurm_install" not in metafunc.fixturenames:
        raise ValueError(f"{metafunc.definition.nodeid}: slurm_min/slurm_max need a Slurm fixture")
    tiers = tiers_within(low and tuple(low.args), high and tuple(high.args))
    metafunc.definition.add_marker(pytest.mark.parametrize(
        "slurm_install", [t.install for t in tiers], ids=[t.id for t in tiers], indirect=True))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A slurm_min/slurm_max test that no tier of this run has (e.g. FABRIC_SLURM_TIERS=22.05) is deselected."""
    def without_tier(item: pytest.Item) -> bool:
        if item.get_closest_marker("slurm_min") is None and item.get_closest_marker("slurm_max") is None:
            return False
        callspec = getattr(item, "callspec", None)
        return not isinstance(callspec and callspec.params.get("slurm_install"), SlurmInstall)

    absent = [item for item in items if without_tier(item)]
    if absent:
        config.hook.pytest_deselected(items=absent)
        items[:] = [item for item in items if not without_tier(item)]


@pytest.fixture(scope="session", params=[t.install for t in TIERS], ids=[t.id for t in TIERS])
def slurm_install(request: pytest.FixtureRequest) -> SlurmInstall:
    """The Slurm under test (one tier of the matrix); skips or fails when it cannot run here."""
    require_install(request.param)
    require_real("slurm", os.geteuid() == 0, "the live Slurm test cluster runs slurmd and munged as root")
    return request.param


@pytest.fixture(scope="session")
def require_slurm(slurm_install: SlurmInstall) -> SlurmInstall:
    """Fail in CI (skip locally) unless this tier's Slurm, munge and root are there; returns the install
    (pass ``prefix=require_slurm.prefix`` to a SlurmTestCluster built by hand)."""
    return slurm_install


@pytest.fixture(scope="session")
def slurm_fabric() -> Any:
    """The fabric model behind ``slurm_cluster``: leaf/spine, 16 hosts, 4 per leaf, 8 GPUs each."""
    from fabric_hpc.topology import build, generators

    return build(generators.leaf_spine(16, hosts_per_leaf=4, gpus=8, cpus=8))


@pytest.fixture(scope="session")
def slurm_cluster_factory(require_slurm: SlurmInstall,
                          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Any]]:
    """``make(fabric=None, **kwargs)`` -> a started SlurmTestCluster; all are stopped at session end.

    With ``fabric`` the cluster is ``SlurmTestCluster.from_fabric(fabric, **kwargs)``, otherwise
    ``SlurmTestCluster(**kwargs)``, running the Slurm of this tier. Its files stay under pytest's
    temporary directory for debugging.
    """
    from fabric_hpc.testing import SlurmTestCluster

    clusters: list[SlurmTestCluster] = []

    def make(fabric: Any = None, **kwargs: Any) -> SlurmTestCluster:
        kwargs.setdefault("base_dir", tmp_path_factory.mktemp("slurm"))
        kwargs.setdefault("prefix", require_slurm.prefix)
        if fabric is not None:
            cluster = SlurmTestCluster.from_fabric(fabric, **kwargs)
        else:
            cluster = SlurmTestCluster(**kwargs)
        clusters.append(cluster)
        return cluster.start()

    try:
        yield make
    finally:  # also on KeyboardInterrupt: pytest tears session fixtures down
        for cluster in reversed(clusters):
            cluster.stop()


@pytest.fixture(scope="session")
def slurm_cluster(slurm_cluster_factory: Callable[..., Any], slurm_fabric: Any) -> Any:
    """The shared live cluster (16 nodes x 8 GPUs, topology.conf and gres.conf from the fabric)."""
    return slurm_cluster_factory(slurm_fabric)


@pytest.fixture(scope="session")
def slurm_accounting_fabric() -> Any:
    """The fabric model behind ``slurm_accounting_cluster``: hosts n1, n2 of 8 GPUs under one leaf."""
    from fabric_hpc.topology import build, generators

    return build(generators.leaf_spine(2, hosts_per_leaf=2, gpus=8, cpus=8))


@pytest.fixture(scope="session")
def slurm_accounting_cluster(slurm_cluster_factory: Callable[..., Any], require_slurm: SlurmInstall,
                             slurm_accounting_fabric: Any) -> Any:
    """A cluster with Slurm accounting (slurmdbd on a throw-away MariaDB, ``priority/multifactor``): two
    hosts n1, n2 of 8 GPUs under one leaf, accounts ``alpha`` and ``beta`` for root. Only the tests that
    read ``sshare``/``sacct`` ask for it (it starts two more daemons)."""
    from fabric_hpc.testing import _accounting

    missing = _accounting.missing(require_slurm)
    require_real("slurmdbd", not missing, f"{', '.join(missing)} ({_accounting.HINT})")
    # MessageTimeout 5 s (Slurm's default 10): a command retries a stopped slurmctld once a second for that
    # long, so the fallback test's failing sshare takes ~4 s instead of ~9 s
    cluster = slurm_cluster_factory(slurm_accounting_fabric, accounting=True,
                                    settings={"MessageTimeout": "5"})
    cluster.add_accounts(["alpha", "beta"])
    return cluster


@pytest.fixture
def events() -> Iterator[list[dict[str, Any]]]:
    """Every structured event fabric emits while the test runs (the ``fabric`` logger at INFO)."""
    seen: list[dict[str, Any]] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.event)  # type: ignore[attr-defined]

    logger, handler = logging.getLogger(LOGGER_NAME), Keep()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield seen
    logger.removeHandler(handler)
    logger.setLevel(level)
