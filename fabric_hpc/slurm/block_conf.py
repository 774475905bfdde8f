"""The block levels of the topology.conf slurmctld reads, for Slurm releases whose ``scontrol show
topology`` prints no block sizes (23.11, 24.05: ``BlockName=r001 BlockIndex=0 Nodes=...`` only).

Read as those releases read the file:

* 24.05+: ``BlockSizes=18,36`` (24.05.8's src/plugins/topology/block/block_record.c, _read_topo_file):
  ``strtok_r`` on commas (empty items skipped), each ``atoi``; the first is the base block size, each
  a base size × 2^k with k at most 15; anything else stops slurmctld ("Invalid BlockSizes value");
* 23.11: ``BlockLevels=0-4`` (23.11's topology_block.c): a list of levels (``bit_unfmt``), the base
  size is the first block's node count; 24.05 replaced it by ``BlockSizes`` (its NEWS);
* neither: levels 0-4 (``bit_nset(block_levels, 0, 4)``), the base size the first block's node count.

Keys are read in any case and the last one wins (Slurm's s_p parser); a value may be quoted. ``Include``
lines are not followed. The file is read from slurmctld's own directory (``SLURM_CONF`` of ``scontrol
show config``) and, where that path is not on this host, from the configless cache of slurmd and sackd
(``/run/slurm/conf``: Slurm sends topology.conf to them, src/common/fetch_config.c): a regular file of at
most :data:`MAX_BYTES`, never a FIFO or device.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from fabric_hpc.errors import ConfigError, NotFoundError
from fabric_hpc.inputs import read_text
from fabric_hpc.topology.import_slurm import logical_lines

#: The block levels of a topology.conf that sets none (block_record.c: ``bit_nset(block_levels, 0, 4)``).
DEFAULT_LEVELS = frozenset(range(5))
#: The highest block level Slurm takes (a 16-bit level bitmap).
MAX_LEVEL = 15
#: The largest topology.conf read (a block topology of 100,000 nodes is ~3 MB).
MAX_BYTES = 8 << 20
#: Where slurmd and sackd keep the files of a configless cluster.
CONFIGLESS_DIR = Path("/run/slurm/conf")


def conf_block_levels(lines: list[str]) -> tuple[int | None, frozenset[int]] | None:
    """(base block size, levels) of topology.conf ``lines``: None when they set neither ``BlockSizes`` nor
    ``BlockLevels``; a base size of None (``BlockLevels``): the first block's node count. ValueError for
    a value that stops slurmctld."""
    values: dict[str, str] = {}
    for _, line in logical_lines(lines):
        for key, value in re.findall(r'(?i)\b(blocksizes|blocklevels)\s*=\s*("[^"]*"|\S*)', line):
            values[key.lower()] = value.strip('"')
    if "blocksizes" in values:
        return _sizes(values["blocksizes"])
    if "blocklevels" in values:
        return None, _levels(values["blocklevels"])
    return None


def _atoi(text: str) -> int:
    m = re.match(r"\s*[+-]?\d{1,12}", text)
    return int(m[0]) if m else 0


def _sizes(value: str) -> tuple[int, frozenset[int]]:
    items = [_atoi(t) for t in value.split(",") if t]
    if not items or min(items) <= 0:
        raise ValueError(f"BlockSizes={value[:80]} is no list of block sizes")
    levels = set()
    for size in items:
        ratio, rest = divmod(size, items[0])
        if rest or ratio & (ratio - 1) or ratio.bit_length() - 1 > MAX_LEVEL:
            raise ValueError(f"BlockSizes={value[:80]}: {size} is not {items[0]} × 2^k (k ≤ {MAX_LEVEL})")
        levels.add(ratio.bit_length() - 1)
    return items[0], frozenset(levels)


def _levels(value: str) -> frozenset[int]:
    """``BlockLevels`` as 23.11's ``bit_unfmt`` reads it (src/common/bitstring.c, ``bitfmt2int`` and
    ``inx2bitstr``): ``0-4,7``, or ``1-9:2`` (from 1 in steps of 2, the end left out); other characters
    are skipped, an empty first item ends the list, a range whose end is before its start sets nothing,
    and a level outside 0-15 stops slurmctld."""
    bad = ValueError(f"BlockLevels={value[:80]} is no list of levels 0-{MAX_LEVEL}")
    if ":" in value:
        m = re.fullmatch(r"\s*([+-]?\d+)-([+-]?\d+):([+-]?\d+)", value)
        if not m or int(m[2]) < int(m[1]) or int(m[3]) <= 0:
            raise bad
        pairs = ((i, i) for i in range(int(m[1]), int(m[2]), int(m[3])))
    else:
        pairs = iter(_pairs(value))
    levels: set[int] = set()
    for first, last in pairs:  # (a step range stops at its first level out of range: at most 17 pairs)
        if not (0 <= first <= MAX_LEVEL and 0 <= last <= MAX_LEVEL):
            raise bad
        levels.update(range(first, last + 1))
    return frozenset(levels)


def _pairs(value: str) -> list[tuple[int, int]]:
    """``bitfmt2int``'s (start, end) pairs of a list without a step."""
    pairs, total, start = [], 0, None
    for i, ch in enumerate(value[:4096] + "\0"):
        if "0" <= ch <= "9":
            total = total * 10 + ord(ch) - ord("0")
        elif ch == "-":
            start, total = total, 0
        elif ch in ",\0":
            if i == 0:
                break
            pairs.append((total if start is None else start, total))
            start, total = None, 0
    return pairs


def conf_paths(slurm_conf: str) -> list[Path]:
    """Where the topology.conf slurmctld reads may be on this host: beside ``slurm_conf`` (slurmctld's
    ``SLURM_CONF``), then the configless cache."""
    near = [Path(slurm_conf).with_name("topology.conf")] if slurm_conf.startswith("/") else []
    return [*near, CONFIGLESS_DIR / "topology.conf"]


def read_block_levels(paths: Iterable[Path]) -> tuple[tuple[int | None, frozenset[int]] | None, str]:
    """:func:`conf_block_levels` of the first of ``paths`` that exists, and that path; ConfigError when none
    does or the file cannot be read (a FIFO, too large, not UTF-8), ValueError for a value Slurm refuses."""
    tried = []
    for path in paths:
        try:
            text = read_text(path, what="topology.conf", limit=MAX_BYTES)
        except NotFoundError:
            tried.append(str(path))
            continue  # (any other reason it cannot be read is named)
        return conf_block_levels(text.splitlines()), str(path)
    raise ConfigError(f"no topology.conf on this host at {' or '.join(tried)}",
                      hint="run the agent where slurmctld's configuration files are (or a configless "
                           "node's /run/slurm/conf)")
