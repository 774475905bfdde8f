"""Slurm host-list expressions: ``n[1-3,7]``, ``su1-h[01-32]``, ``a[1-2]b[1-2]``.

:func:`expand` turns an expression into names; :func:`compress` turns names back into the shortest
expression Slurm accepts (zero padding kept); :func:`select` and :func:`outside` say which of a
fabric's hosts a list names, and which name it has that the fabric lacks, without expanding it.
They are used by the topology files, the exporters, the Slurm client and the agent, so there is one
implementation of the syntax.
"""

from __future__ import annotations

import bisect
import re
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping, Set as AbstractSet

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


def _checked_parts(expr: str, budget: int) -> list[str]:
    """The top-level parts of ``expr``, each checked, their names counted against ``budget``."""
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
    return parts


def expand(expr: str, *, budget: int = MAX_NAMES, repeats: bool = True) -> list[str]:
    """Expand a host-list expression into host names, in order, without duplicates. The names are
    counted first: more than ``budget`` is a ConfigError (nothing is expanded). ``repeats=False``:
    a name the expression gives twice (``g[1-3],g2``) is a ConfigError (a fabric file's lists)."""
    parts = _checked_parts(expr, budget)
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


#: Matching one host against a part's ranges costs about as much as making this many names (CPython
#: 3.11: ~5 us against ~1.2 us), so :func:`select` expands a part of up to this many names per host.
_SCAN_COST = 4


def select(expr: str, hosts: Collection[str], *, budget: int = MAX_NAMES) -> set[str]:
    """The names among ``hosts`` that ``expr`` names: ``set(expand(expr)) & set(hosts)``, with the
    same checks and errors, without expanding the whole list. A part of ``expr`` that stands for at
    most :data:`_SCAN_COST` names per host is expanded; a larger one (``n[1-99998]`` against a 16-host
    fabric) is matched host by host against its ranges, so no part costs more than
    ``min(its names, _SCAN_COST * len(hosts))`` names' work."""
    parts = _checked_parts(expr, budget)
    members = hosts if isinstance(hosts, (AbstractSet, Mapping)) else set(hosts)
    found: set[str] = set()
    for part in parts:
        if _count(expr, part) <= _SCAN_COST * len(members):
            found.update(n for n in _expand_one(expr, part) if n in members)
        else:
            pattern = _Pattern(expr, part)
            found.update(h for h in members if pattern.matches(h))
    return found


def outside(expr: str, hosts: Collection[str], *, budget: int = MAX_NAMES) -> str | None:
    """The first name of ``expr`` (in :func:`expand`'s order) that is not among ``hosts``, or None;
    same checks and errors as :func:`expand`. The names are made one at a time and the search stops
    at the first one missing: a list naming far more hosts than ``hosts`` has ends early."""
    parts = _checked_parts(expr, budget)
    members = hosts if isinstance(hosts, (AbstractSet, Mapping)) else set(hosts)
    for part in parts:
        for name in _iter_one(expr, part):
            if name not in members:
                return name
    return None


def _iter_one(expr: str, part: str) -> Iterator[str]:
    """The names of one part, in :func:`_expand_one`'s order, made one at a time."""
    pieces = _BRACKET.split(part)  # literal, body, literal, body, ..., literal
    literals = pieces[0::2]
    ranges = [_range_items(expr, body) for body in pieces[1::2]]

    def names(k: int, prefix: str) -> Iterator[str]:
        if k == len(ranges):
            yield prefix
            return
        for a, b, w in ranges[k]:
            for n in range(a, b + 1):
                yield from names(k + 1, prefix + str(n).zfill(w) + literals[k + 1])

    return names(0, literals[0])


class _Pattern:
    """One part of a host list as a matcher: its literals, and for each bracket its ranges by
    zero-pad width as sorted, merged ``(firsts, lasts)`` (a number written ``s`` is in a range item
    ``(a, b, w)`` when ``a <= int(s) <= b`` and ``str(int(s)).zfill(w) == s``)."""

    def __init__(self, expr: str, part: str) -> None:
        pieces = _BRACKET.split(part)
        self.literals = pieces[0::2]
        self.brackets = [self._table(_range_items(expr, body)) for body in pieces[1::2]]

    @staticmethod
    def _table(items: list[tuple[int, int, int]]) -> dict[int, tuple[list[int], list[int]]]:
        spans: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for a, b, w in items:
            spans[w].append((a, b))
        table = {}
        for w, pairs in spans.items():
            firsts: list[int] = []
            lasts: list[int] = []
            for a, b in sorted(pairs):
                if lasts and a <= lasts[-1] + 1:
                    lasts[-1] = max(lasts[-1], b)
                else:
                    firsts.append(a)
                    lasts.append(b)
            table[w] = (firsts, lasts)
        return table

    @staticmethod
    def _written(table: dict[int, tuple[list[int], list[int]]], digits: str) -> bool:
        """Whether a range of ``table`` writes a number as ``digits``."""
        n = int(digits)
        padded = len(digits) > 1 and digits[0] == "0"
        for w, (firsts, lasts) in table.items():
            if (w == len(digits)) if padded else (w <= len(digits)):
                i = bisect.bisect_right(firsts, n) - 1
                if i >= 0 and lasts[i] >= n:
                    return True
        return False

    def matches(self, name: str) -> bool:
        lits = self.literals
        if not name.startswith(lits[0]) or not name.endswith(lits[-1]):
            return False
        return self._from(name, len(lits[0]), 0)

    def _from(self, name: str, i: int, k: int) -> bool:
        if k == len(self.brackets):
            return i == len(name)
        lit = self.literals[k + 1]
        j = i
        while j < len(name) and j - i < MAX_DIGITS and "0" <= name[j] <= "9":
            j += 1
            if (name.startswith(lit, j) and self._written(self.brackets[k], name[i:j])
                    and self._from(name, j + len(lit), k + 1)):
                return True
        return False


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
