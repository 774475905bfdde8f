"""Every FabricError survives pickling and copying with its fields: a PlacementInfeasible raised in a
ProcessPoolExecutor worker reaches the caller (it used to break the whole pool, since unpickling
called __init__ without the keyword-only ``explanation``)."""

from __future__ import annotations

import copy
import pickle
from concurrent.futures import ProcessPoolExecutor

import pytest

from fabric_hpc.errors import ConfigError, FabricError, NotFoundError
from fabric_hpc.inference.mpi import PeerFailed
from fabric_hpc.placement.contract import PlacementInfeasible


def _errors() -> list[FabricError]:
    return [
        PlacementInfeasible("no room", explanation={"constraint": "within", "needed": 64},
                            hint="ask for less"),
        PeerFailed("rank 3 failed", source=3, code=5),
        ConfigError("bad", hint="fix it"),
        NotFoundError("missing file"),
    ]


@pytest.mark.parametrize("exc", _errors(), ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("how", [lambda e: pickle.loads(pickle.dumps(e)), copy.copy, copy.deepcopy],
                         ids=["pickle", "copy", "deepcopy"])
def test_round_trip_keeps_type_message_and_fields(exc, how):
    back = how(exc)
    assert type(back) is type(exc)
    assert str(back) == str(exc) and back.args == exc.args
    assert back.to_dict() == exc.to_dict()
    assert vars(back) == vars(exc)


def _place_one(gpus: int) -> tuple[str, ...]:
    from fabric_hpc.placement import ClusterState, place
    from fabric_hpc.topology import build, generators
    fab = build(generators.leaf_spine(hosts=4, hosts_per_leaf=2))
    return place(fab, ClusterState(fab), f"gpus={gpus}").hosts


def test_infeasible_in_a_process_pool_reaches_the_caller():
    with ProcessPoolExecutor(max_workers=2) as pool:
        ok, bad = pool.submit(_place_one, 8), pool.submit(_place_one, 64)
        assert len(ok.result(timeout=120)) == 1
        with pytest.raises(PlacementInfeasible) as err:
            bad.result(timeout=120)
    assert err.value.explanation["constraint"]
