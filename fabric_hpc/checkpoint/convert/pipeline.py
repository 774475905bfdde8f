"""Pipeline stages merged or split: stage-local layer numbers <-> global layer numbers.

A pipeline-parallel job (e.g. Megatron with PP ranks) keeps each stage's layers numbered from 0:
stage 1 of ``[4, 4, 3]`` holds global layers 4..7 as its layers 0..3. With the stages under
per-stage prefixes in one checkpoint (``pp1/decoder.layers.0.…``, e.g. imported with
``--prefix pp1``), ``merge`` renames them into global numbering (``decoder.layers.4.…``) and
strips the stage prefix of the other tensors (embedding on the first stage, final norm and
output layer on the last); ``split`` is the inverse, sending the other tensors to the first or
last stage by pattern. Only names change: no tensor is read here. Counts that do not add up
(a stage with more or fewer layers than the recipe says, layer numbers past the total, a
stage the recipe does not have) are refused before anything is written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from fabric_hpc.checkpoint.errors import CheckpointError

HINT = "the recipe's pipeline.layers lists the layers of each stage in order; check them with `fabric ckpt show`"


def _regex(template: str, tail: bool) -> re.Pattern[str]:
    out, pos = "^", 0
    for m in re.finditer(r"\{([si])\}", template):
        out += re.escape(template[pos:m.start()]) + rf"(?P<{m.group(1)}>\d+)"
        pos = m.end()
    return re.compile(out + re.escape(template[pos:]) + ("(?P<rest>.*)$" if tail else "$"))


def _starts(layers: list[int]) -> list[int]:
    out, n = [], 0
    for k in layers:
        out.append(n)
        n += k
    return out


def merge(names: Iterable[str], layers: list[int], local: str, glob: str, stage: str) -> dict[str, str]:
    """old -> new name: stage-local layer numbers into global ones, stage prefixes removed."""
    loc, stg, starts = _regex(local, True), _regex(stage, True), _starts(layers)
    seen: dict[int, set[int]] = {s: set() for s in range(len(layers))}
    out: dict[str, str] = {}
    for name in names:
        m = loc.match(name)
        if m:
            s, i = int(m["s"]), int(m["i"])
            _stage_ok(name, s, layers)
            if i >= layers[s]:
                raise CheckpointError(f"pipeline merge: {name} is layer {i} of stage {s}, which has "
                                      f"{layers[s]} layers in the recipe", hint=HINT)
            seen[s].add(i)
            out[name] = glob.replace("{i}", str(starts[s] + i)) + m["rest"]
            continue
        m = stg.match(name)
        if m:
            _stage_ok(name, int(m["s"]), layers)
            out[name] = m["rest"]
        else:
            out[name] = name  # outside every stage: kept
    for s, got in seen.items():
        if got != set(range(layers[s])):
            raise CheckpointError(f"pipeline merge: stage {s} holds layers {_ranges(got)}, the recipe says "
                                  f"{layers[s]} (0-{layers[s] - 1})", hint=HINT)
    return _unique(out, "merge")


def split(names: Iterable[str], layers: list[int], local: str, glob: str, stage: str,
          first: list[str], last: list[str]) -> dict[str, str]:
    """old -> new name: global layer numbers into stage-local ones under each stage's prefix;
    other tensors matching ``first`` / ``last`` go to the first / last stage."""
    g, starts, total = _regex(glob, True), _starts(layers), sum(layers)
    seen: set[int] = set()
    out: dict[str, str] = {}
    for name in names:
        m = g.match(name)
        if m:
            i = int(m["i"])
            if i >= total:
                raise CheckpointError(f"pipeline split: {name} is layer {i}, the stages {layers} hold {total}",
                                      hint=HINT)
            seen.add(i)
            s = max(k for k in range(len(layers)) if starts[k] <= i and layers[k] > 0)
            out[name] = local.replace("{s}", str(s)).replace("{i}", str(i - starts[s])) + m["rest"]
        elif any(re.fullmatch(p, name) for p in first):
            out[name] = stage.replace("{s}", "0") + name
        elif any(re.fullmatch(p, name) for p in last):
            out[name] = stage.replace("{s}", str(len(layers) - 1)) + name
        else:
            out[name] = name
    if seen != set(range(total)):
        raise CheckpointError(f"pipeline split: the checkpoint has layers {_ranges(seen)}, the stages {layers} "
                              f"add up to {total}", hint=HINT)
    return _unique(out, "split")


def _stage_ok(name: str, s: int, layers: list[int]) -> None:
    if s >= len(layers):
        raise CheckpointError(f"pipeline merge: {name} belongs to stage {s}, the recipe has {len(layers)} stages",
                              hint=HINT)


def _unique(out: dict[str, str], what: str) -> dict[str, str]:
    back: dict[str, str] = {}
    for old, new in out.items():
        if new in back:
            raise CheckpointError(f"pipeline {what}: {back[new]!r} and {old!r} would both become {new!r}",
                                  hint="two stages hold the same tensor (e.g. tied embeddings): drop one of them "
                                       "in a convert of its own first (drop: [...])")
        back[new] = old
    return out


def _ranges(nums: set[int]) -> str:
    if not nums:
        return "none"
    s = sorted(nums)
    parts, lo, prev = [], s[0], s[0]
    for x in s[1:] + [None]:  # type: ignore[list-item]
        if x is None or x != prev + 1:
            parts.append(f"{lo}" if lo == prev else f"{lo}-{prev}")
            if x is not None:
                lo = x
        if x is not None:
            prev = x
    return ", ".join(parts)


__all__ = ["merge", "split"]
