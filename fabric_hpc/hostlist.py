"""Slurm host-list expressions: ``n[1-3,7]``, ``su1-h[01-32]``, ``a[1-2]b[1-2]``.

:func:`expand` turns an expression into names; :func:`compress` turns names back into the shortest
expression Slurm accepts (zero padding kept). Both are used by the topology files, the exporters
and the Slurm client, so there is one implementation of the syntax.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable

from fabric_hpc.errors import ConfigError

_BRACKET = re.compile(r"\[([^\[\]]*)\]")
#: a host, switch, rack or feature name as Slurm's config files take it (no spaces, ``#``, ``=``,
#: ``,``, quotes, slashes or control characters: they would end or comment out a config line)
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
NAME = re.compile(NAME_PATTERN)
#: Most names one expression may expand to (counted before expanding; a fat tree with k=64 has
#: 65,536 hosts). Pass ``budget=`` to :func:`expand` to change it for one call.
MAX_NAMES = 100_000
#: Most digits of a number in a range (zero padding included). Slurm's hostlist.c reads a name's
#: number with strtoul (unsigned long: 64 bits, saturating at 2^64 - 1, and a range ending there
#: counts as empty), so 18 digits (< 10^18) is always safe; names with wider numbers stay literal.
MAX_DIGITS = 18
_TAIL_NUMBER = re.compile(r"^(.*?)([0-9]+)$")


#: Largest trailing number of a name that Slurm reads back unchanged: strtoul saturates larger ones
#: at 2^64 - 1 (``scontrol show hostnames big18446744073709551616`` prints ...551615), which a
#: range reads as empty.
SLURM_MAX_NUMBER = 2**64 - 2


def slurm_renames(name: str) -> bool:
    """Whether Slurm would read ``name`` back as another name: its trailing number is past
    :data:`SLURM_MAX_NUMBER`."""
    m = _TAIL_NUMBER.match(name)
    if m is None:
        return False
    digits = m.group(2).lstrip("0")
    return len(digits) > 20 or (bool(digits) and int(digits) > SLURM_MAX_NUMBER)


def _split_top_level(expr: str) -> list[str]:
    """Split on commas that are outside brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(expr):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ConfigError(f"host list {expr!r}: ']' without '['")
        elif ch == "," and depth == 0:
            parts.append(expr[start:i])
            start = i + 1
    if depth != 0:
        raise ConfigError(f"host list {expr!r}: '[' without ']'")
    parts.append(expr[start:])
    return [p.strip() for p in parts if p.strip()]


def _number(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= MAX_DIGITS


def _range_items(expr: str, body: str) -> list[tuple[int, int, int]]:
    """``(first, last, zero-pad width)`` of each item of a bracket body."""
    out = []
    for item in body.split(","):
        item = item.strip()
        if not item:
            raise ConfigError(f"host list {expr!r}: empty range item in [{body}]")
        lo, sep, hi = item.partition("-")
        if not _number(lo) or (sep and not _number(hi)):
            raise ConfigError(
                f"host list {expr!r}: range item {item!r} is not N or N-M",
                hint="write ranges like n[1-4,7] or n[01-16]",
            )
        width = len(lo) if lo.startswith("0") and len(lo) > 1 else 0
        a, b = int(lo), int(hi) if sep else int(lo)
        if b < a:
            raise ConfigError(f"host list {expr!r}: range {item!r} runs backwards")
        out.append((a, b, width))
    return out


def _expand_range(expr: str, body: str) -> list[str]:
    return [str(n).zfill(w) for a, b, w in _range_items(expr, body) for n in range(a, b + 1)]


def _count(expr: str, part: str) -> int:
    """How many names ``part`` expands to, without expanding it."""
    total = 1
    for body in _BRACKET.findall(part):
        total *= sum(b - a + 1 for a, b, _ in _range_items(expr, body))
    return total


def _check_part(expr: str, part: str) -> None:
    if any(ch.isspace() for ch in part):
        raise ConfigError(f"host list {expr!r}: {part!r} contains white space",
                          hint="host names have no spaces: write n[1-4] or n1,n2")
    if part.startswith("["):
        raise ConfigError(f"host list {expr!r}: {part!r} has no name before '['",
                          hint="give a prefix, e.g. n[1-4] (not [1-4])")
    if _BRACKET.sub("", part).count("[") or _BRACKET.sub("", part).count("]"):
        raise ConfigError(f"host list {expr!r}: unbalanced or nested brackets in {part!r}")


def _expand_one(expr: str, part: str) -> list[str]:
    match = _BRACKET.search(part)
    if match is None:
        return [part]
    head, tail = part[: match.start()], part[match.end():]
    return [head + n + rest for n in _expand_range(expr, match.group(1)) for rest in _expand_one(expr, tail)]


def count(expr: str) -> int:
    """How many names (with repeats) ``expr`` stands for, computed without expanding it."""
    return sum(_count(expr, part) for part in _split_top_level(expr.strip()))


def expand(expr: str, *, budget: int = MAX_NAMES, repeats: bool = True) -> list[str]:
    """Expand a host-list expression into host names, in order, without duplicates. The names are
    counted first: more than ``budget`` is a ConfigError (nothing is expanded). ``repeats=False``:
    a name the expression gives twice (``g[1-3],g2``) is a ConfigError (a fabric file's lists)."""
    if not isinstance(expr, str) or not expr.strip():
        raise ConfigError(f"host list {expr!r} is empty", hint="give names like n[1-4] or n1,n2")
    parts = _split_top_level(expr.strip())
    total = 0
    for part in parts:
        _check_part(expr, part)
        total += _count(expr, part)
        if total > budget:
            shown = expr if len(expr) <= 80 else expr[:77] + "..."
            raise ConfigError(f"host list {shown!r} stands for more than {budget:,} names",
                              hint="list fewer hosts; a fabric has at most "
                                   f"{MAX_NAMES:,} hosts per host-list expression")
    names: list[str] = []
    seen: set[str] = set()
    for part in parts:
        for name in _expand_one(expr, part):
            if name not in seen:
                seen.add(name)
                names.append(name)
            elif not repeats:
                shown = expr if len(expr) <= 80 else expr[:77] + "..."
                raise ConfigError(f"host list {shown!r} names {name!r} twice",
                                  hint="give each host once in the list")
    return names


def compress(names: Iterable[str]) -> str:
    """The shortest Slurm expression for ``names`` (order of first appearance of each prefix).

    Only names with a prefix and a number of at most :data:`MAX_DIGITS` digits go into ranges:
    ``[1-2]`` has no name before '[' (fabric's parser refuses it), and a wider number could be read
    back by Slurm as another one (see ``MAX_DIGITS``). Other names are written as they are."""
    groups: dict[tuple[str, int], list[int]] = defaultdict(list)
    order: list[tuple[str, int] | str] = []
    for name in names:
        m = _TAIL_NUMBER.match(name)
        if m is None or not m.group(1) or len(m.group(2)) > MAX_DIGITS:
            order.append(name)
            continue
        prefix, digits = m.groups()
        width = len(digits) if digits.startswith("0") and len(digits) > 1 else 0
        key = (prefix, width)
        if key not in groups:
            order.append(key)
        groups[key].append(int(digits))
    _merge_natural_width(groups)
    parts: list[str] = []
    for key in order:
        if isinstance(key, str):
            parts.append(key)
            continue
        prefix, width = key
        numbers = sorted(set(groups[key]))
        if not numbers:
            continue
        if len(numbers) == 1:
            parts.append(f"{prefix}{str(numbers[0]).zfill(width)}")
            continue
        parts.append(f"{prefix}[{','.join(_runs(numbers, width))}]")
    return ",".join(parts)


def _merge_natural_width(groups: dict[tuple[str, int], list[int]]) -> None:
    """``h09`` (padded, width 2) and ``h10`` (natural width 2) belong to one range ``h[09-10]``."""
    for (prefix, width), numbers in list(groups.items()):
        plain = groups.get((prefix, 0))
        if width == 0 or not plain:
            continue
        same = [n for n in plain if len(str(n)) == width]
        if same:
            numbers.extend(same)
            groups[(prefix, 0)] = [n for n in plain if len(str(n)) != width]


def _runs(numbers: list[int], width: int) -> list[str]:
    runs: list[str] = []
    start = prev = numbers[0]
    for n in numbers[1:] + [None]:  # type: ignore[list-item]
        if n is not None and n == prev + 1:
            prev = n
            continue
        a, b = str(start).zfill(width), str(prev).zfill(width)
        runs.append(a if start == prev else f"{a}-{b}")
        if n is not None:
            start = prev = n
    return runs
