"""``tier_map`` names as Slurm compares them, and entries that name nothing in Slurm.

* Slurm stores QOS names in lower case (``sacctmgr add qos Urgent`` stores ``urgent``: sacctmgr's
  ``slurm_addto_char_list`` lowercases) and matches them ignoring case (assoc_mgr.c
  ``assoc_mgr_fill_in_qos``: ``xstrcasecmp``): ``qos:Urgent=high`` never matched the job's ``urgent``.
  Partition names are case-sensitive (partition_mgr.c ``list_find_part``: ``xstrcmp``) and stay so.
* ``partition:hi =high`` kept the key ``"hi "`` (never matching), and entries naming a partition or QOS
  Slurm does not have passed ``fabric agent check`` and started silently.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.slurm.contract import Job, Node, SlurmError
from fabric_hpc.slurm.tier_check import unknown_entries
from fabric_hpc.slurm.tiers import TierMap


def _job(qos: str = "", partition: str = "debug") -> Job:
    return Job(7, "m", state="PENDING", partition=partition, qos=qos, nodes=1, gpus_per_node=8,
               comment="fabric")


@pytest.mark.parametrize(("entry", "qos"), [("qos:Urgent=high", "urgent"), ("qos:urgent=high", "Urgent"),
                                            ("qos:URGENT=high", "normal,Urgent")])
def test_qos_names_match_ignoring_case(entry: str, qos: str) -> None:
    assert TierMap.parse([entry]).tier(qos, "debug", None) == "high"


def test_a_direct_map_matches_ignoring_case_too() -> None:
    assert TierMap(qos={"Scav": "spot"}).tier("scav", "debug", "high") == "spot"


def test_partition_names_stay_case_sensitive() -> None:
    tiers = TierMap.parse(["partition:Hi=high"])
    assert tiers.tier("", "Hi", None) == "high" and tiers.tier("", "hi", None) == "normal"


def test_the_same_qos_in_two_cases_with_two_tiers_is_refused() -> None:
    with pytest.raises(ConfigError, match="mapped twice"):
        TierMap.parse(["qos:Urgent=high", "qos:urgent=spot"])


@pytest.mark.parametrize("entry", ["partition:hi =high", "partition: hi=high", " partition:hi=high",
                                   "partition:hi= high"])
def test_spaces_around_a_name_are_stripped(entry: str) -> None:
    tiers = TierMap.parse([entry])
    assert tiers.partition == {"hi": "high"} and tiers.tier("", "hi", None) == "high"


def test_a_name_with_a_space_inside_is_refused() -> None:
    with pytest.raises(ConfigError, match="space"):
        TierMap.parse(["partition:h i=high"])


def _nodes(*parts: Sequence[str]) -> list[Node]:
    return [Node(name=f"n{i}", state="idle", cpus=8, gpus=8, partitions=tuple(p))
            for i, p in enumerate(parts)]


def _qos(names: str):
    def run(argv: Sequence[str]) -> str:
        assert argv[:2] == ["sacctmgr", "-nP"]
        return names
    return run


def _no_dbd(argv: Sequence[str]) -> str:
    raise SlurmError("sacctmgr: error: Problem talking to the database: Connection refused")


def test_unknown_partitions_and_qos_are_named() -> None:
    tiers = TierMap.parse(["partition:nosuch=high", "partition:hi=high", "qos:nosuch=spot",
                           "qos:Urgent=high"])
    problems, notes = unknown_entries(tiers, _nodes(["debug", "hi"], ["debug"]), _qos("normal\nurgent\n"))
    assert problems == ["partition:nosuch=high: no partition 'nosuch' in Slurm (partitions: debug, hi)",
                        "qos:nosuch=spot: no QOS 'nosuch' in Slurm (QOS: normal, urgent)"]
    assert notes == []


def test_qos_not_checked_without_accounting() -> None:
    tiers = TierMap.parse(["partition:hi=high", "qos:scav=spot"])
    problems, notes = unknown_entries(tiers, _nodes(["hi"]), _no_dbd)
    assert problems == [] and len(notes) == 1 and "QOS not checked" in notes[0] and "sacctmgr" in notes[0]


def test_nothing_asked_without_qos_entries() -> None:
    problems, notes = unknown_entries(TierMap.parse(["partition:hi=high"]), _nodes(["hi"]), _no_dbd)
    assert problems == [] and notes == []


def test_partitions_not_checked_when_slurm_lists_none() -> None:
    problems, notes = unknown_entries(TierMap.parse(["partition:hi=high"]), _nodes([]), _no_dbd)
    assert problems == [] and notes and "partitions not checked" in notes[0]
