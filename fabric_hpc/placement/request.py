"""What a gang asks for: :class:`Request` (a StrictModel) and its CLI string form.

``nodes=4,gpus=8,within=leaf`` means 4 hosts × 8 GPUs inside one leaf group. Without ``nodes``,
``gpus=N`` is N GPUs in total on as few hosts as the cost model likes. Inside a host list
(``include=``, ``exclude=``) ``;`` separates items as ``,`` does (``exclude=n[9-15];n1``): a comma
outside brackets ends the option, so ``--comment=fabric:…`` (and job_submit.lua, which splits options
on every comma) needs ``;``; commas inside brackets stay (``exclude=gpu[001-010,015];rack1-n01``). Every key is documented in
``docs/placement.md``; an unknown key or a bad value is a :class:`~fabric_hpc.errors.ConfigError`
that names it and lists the valid keys.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from pydantic import Field, model_validator

from fabric_hpc.errors import ConfigError
from fabric_hpc.placement.checked import CheckedModel
from fabric_hpc.validation import did_you_mean, parse_model


class Request(CheckedModel):
    """A gang: ``nodes`` hosts × ``gpus_per_node`` GPUs, or ``gpus`` GPUs in total. A bad field or
    combination is a ConfigError, also when constructed directly (``Request(gpus=-3)``)."""

    _hint: ClassVar[str] = ("e.g. Request(gpus=16) or Request(nodes=4, gpus_per_node=8); every key is in "
                            "docs/placement.md (Requests)")

    nodes: int | None = Field(default=None, ge=1, le=100_000)
    gpus_per_node: int | None = Field(default=None, ge=1, le=1024)
    gpus: int | None = Field(default=None, ge=1, le=10_000_000)
    #: Hosts must be entirely free and are given to the job whole.
    whole_hosts: bool = False
    #: All hosts in one domain of this level ("host", "nvlink", "rack", or a network level).
    within: str | None = None
    #: At most this many domains of ``max_domains_level`` (like Slurm's ``--switches``).
    max_domains: int | None = Field(default=None, ge=1)
    max_domains_level: str = "leaf"
    #: The GPUs of each host sit on one NUMA node (CPU socket).
    numa_local: bool = False
    #: Every host uses the same local GPU indices (and so the same NICs / rails).
    rail_aligned: bool = False
    gpu_model: str | None = None
    features: tuple[str, ...] = ()
    #: Host-list expressions (``su01-h[01-08]``): only these hosts / never these hosts.
    include: str | None = None
    exclude: str | None = None
    #: The gang is ``slices`` equal sub-gangs, each inside one domain of ``slice_level``.
    slices: int | None = Field(default=None, ge=1)
    slice_level: str | None = None
    #: Tensor-parallel group size: the gang's GPUs form groups of ``tp`` (in ring order), each inside
    #: one NVLink domain (slices of ``tp`` GPUs at the ``nvlink`` level), and its modelled collective is
    #: the data-parallel all-reduce: ``tp`` concurrent rings, one per TP rank, of ``1/tp`` of the bytes.
    tp: int | None = Field(default=None, ge=1, le=1024)
    #: Pipeline-parallel stages: the gang's GPUs, in ring order, form ``pp`` consecutive stages of
    #: equal size, and each stage all-reduces its own ``1/pp`` of the bytes over its data-parallel
    #: ranks (with ``tp``: ``tp`` rings per stage). Places nothing by itself; it changes the cost.
    pp: int | None = Field(default=None, ge=1, le=1024)

    @model_validator(mode="after")
    def _consistent(self) -> Request:
        problems = []
        if (self.nodes is None) == (self.gpus is None):
            problems.append("give exactly one of nodes (with gpus_per_node) or gpus (a total)")
        if self.nodes is not None and self.gpus_per_node is None and not self.whole_hosts:
            problems.append("nodes needs gpus_per_node (or whole_hosts=true)")
        if self.gpus is not None and self.gpus_per_node is not None:
            problems.append("gpus_per_node only goes with nodes")
        if self.rail_aligned and self.nodes is None:
            problems.append("rail_aligned needs nodes × gpus_per_node")
        if (self.slices is None) != (self.slice_level is None):
            problems.append("slices and slice_level go together")
        if self.slices is not None and (self.nodes is None) != (self.gpus is None) and self.units % self.slices:
            problems.append(f"{self.units} {'hosts' if self.nodes else 'GPUs'} do not split into "
                            f"{self.slices} equal slices")
        if self.within == "host" and self.nodes is not None and self.nodes > 1:
            problems.append(f"within=host keeps every GPU on one host, so it cannot hold nodes={self.nodes}: "
                            "give nodes=1, a total (gpus=N without nodes), or a wider within (nvlink, rack, "
                            "leaf)")
        problems += self._tp_problems() + self._pp_problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _tp_problems(self) -> list[str]:
        if self.tp is None:
            return []
        if self.slices is not None:
            return ["tp sets the slices itself (groups of tp GPUs inside NVLink domains): give tp or slices"]
        gpn = self.gpus_per_node
        total = self.gpus if self.nodes is None else (self.nodes * gpn if gpn else None)
        if total is None:
            return [_size_missing("tp", self)]
        if total % self.tp:
            return [f"{total} GPUs do not split into tensor-parallel groups of {self.tp}"
                    + _what_divides(total, self.tp, "tp", self.tp, shape=self._shape())]
        if gpn and gpn % self.tp and self.tp % gpn:
            return [f"a group of tp={self.tp} GPUs must fill whole hosts of {gpn} GPUs or fit inside one "
                    "(tp a multiple or a divisor of gpus_per_node)"]
        return []

    def _pp_problems(self) -> list[str]:
        if self.pp is None:
            return []
        gpn = self.gpus_per_node
        total = self.gpus if self.nodes is None else (self.nodes * gpn if gpn else None)
        if total is None:
            return [_size_missing("pp", self)]
        if total % (self.pp * (self.tp or 1)):
            return [f"{total} GPUs do not split into {self.pp} pipeline stages"
                    + (f" of whole tensor-parallel groups of {self.tp}" if self.tp else "")
                    + _what_divides(total // (self.tp or 1) if not total % (self.tp or 1) else 0,
                                    self.pp * (self.tp or 1), "pp", self.pp, total, shape=self._shape())]
        return []

    def _shape(self) -> tuple[int, int, int | None] | None:
        """(nodes, GPUs per node, tp) of a nodes × GPUs request, None for a total: what a hint may change."""
        if self.nodes is None or not self.gpus_per_node:
            return None
        return self.nodes, self.gpus_per_node, self.tp

    def tp_slices(self) -> tuple[int, str] | None:
        """(slices, level) that keep every tensor-parallel group inside one NVLink domain, None when
        nothing needs keeping (no ``tp``, ``tp=1``, or hosts that each hold whole groups)."""
        if not self.tp or self.tp == 1:
            return None
        if self.nodes is None:
            return int(self.gpus) // self.tp, "nvlink"  # type: ignore[arg-type]
        gpn = int(self.gpus_per_node)  # type: ignore[arg-type]
        return None if gpn >= self.tp else (self.nodes // (self.tp // gpn), "nvlink")

    def parallel_meta(self) -> dict[str, int]:
        """``tp``/``pp`` above 1 as a running job's state metadata (:meth:`ClusterState.parallel_shape`)."""
        return {k: v for k, v in (("tp", self.tp), ("pp", self.pp)) if v is not None and v > 1}

    @property
    def units(self) -> int:
        """Hosts (nodes mode) or GPUs (total mode) to place."""
        return int(self.nodes if self.nodes is not None else self.gpus)  # type: ignore[arg-type]

    def describe(self) -> str:
        """The request in words for messages: "2 host(s) × 8 GPU(s) (tp=16)", "8 GPU(s) (features=a&b)"."""
        what = (f"{self.nodes} host(s) × {self.gpus_per_node or 'all'} GPU(s)" if self.nodes
                else f"{self.gpus} GPU(s)")
        extra = [f"{k}={'&'.join(v) if isinstance(v, tuple) else v}"  # features as the string form has them
                 for k, v in self.model_dump(exclude_defaults=True).items()
                 if k not in ("nodes", "gpus_per_node", "gpus")]
        return what + (f" ({', '.join(extra)})" if extra else "")


def _size_missing(key: str, r: Request) -> str:
    """Why ``tp``/``pp`` cannot be checked: the request gives no GPU count (nodes with whole_hosts
    alone leaves it to the hosts the placer picks), and what to add."""
    if r.nodes is not None and r.whole_hosts:
        return (f"{key} with nodes and whole_hosts needs gpus_per_node too (G = the GPUs of each whole host: "
                f"nodes={r.nodes},gpus_per_node=G,whole_hosts,{key}={getattr(r, key)})")
    return f"{key} needs a GPU count: gpus=N, or nodes with gpus_per_node"


_BOOL = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}
_ALIASES = {"exclusive": "whole_hosts", "switches": "max_domains", "model": "gpu_model", "numa": "numa_local",
            "rail": "rail_aligned", "gpus-per-node": "gpus_per_node", "gpus_per_host": "gpus_per_node",
            "nodelist": "include", "w": "include", "x": "exclude", "constraint": "features"}
#: ``gpus`` and ``gpus_per_node`` name one value in the string form (``nodes=2,gpus=8``).
_REPEAT_GUARD = {"gpus": "gpus_per_node", "gpus_per_node": "gpus"}
MAX_REQUEST_CHARS = 4096
_INTS = ("nodes", "gpus_per_node", "gpus", "max_domains", "slices", "tp", "pp")
_BOOLS = ("whole_hosts", "numa_local", "rail_aligned")
_HOSTLISTS = ("include", "exclude")


def _split(text: str) -> list[str]:
    """Split on commas outside brackets (host lists keep their ``[1,3]``)."""
    return [p.strip() for p in _split_items(text) if p.strip()]


def _split_items(text: str) -> list[str]:
    """The items of ``text`` between commas outside brackets, empty ones kept."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


def parse_request(text: str | dict[str, Any], *, source: str = "request") -> Request:
    """A :class:`Request` from ``"nodes=4,gpus=8,within=leaf"`` or a mapping.

    ``source`` names the input in messages: ``request`` (the Python argument) by default; the CLI
    passes ``--request`` (its flag), so its messages and their example are in flag words.

    In the string form ``gpus`` means GPUs per node when ``nodes`` is given (like Slurm's
    ``--gpus-per-node``) and the total otherwise; ``switches=K`` is ``max_domains=K`` at the leaf
    level; a boolean key alone (``numa_local``) means true; features join with ``&``.
    """
    data = text if not isinstance(text, str) else request_fields(text, source=source)
    return parse_model(Request, data, source=source,
                       hint="change what the message names (where it lists values that work, use one); "
                            "a request looks like 'nodes=4,gpus=8,within=leaf' or 'gpus=16,numa_local'")


def request_fields(text: str, *, source: str = "request") -> dict[str, Any]:
    """The typed fields of a request string (keys resolved, values converted; not yet validated
    together): :func:`parse_request`'s first half, for callers that add fields of their own."""
    valid = sorted(set(Request.model_fields) | set(_ALIASES))
    data: dict[str, Any] = {}
    seen: set[str] = set()
    problems = []
    if len(text) > MAX_REQUEST_CHARS:
        raise ConfigError(f"{source}: {len(text):,} characters, more than {MAX_REQUEST_CHARS:,}",
                          hint=_example(source))
    for part in _split(text):
        key, sep, value = part.partition("=")
        key = _ALIASES.get(key.strip().lower(), key.strip().lower())
        value = value.strip()
        if key not in Request.model_fields:
            problems.append(f"{source}: unknown key {key!r}{did_you_mean(key, valid)} "
                            f"(valid keys: {', '.join(valid)})")
            continue
        if key in data:
            problems.append(f"{source}: {part.partition('=')[0].strip()!r} is given more than once")
            continue
        if key in _REPEAT_GUARD and _REPEAT_GUARD[key] in seen:
            problems.append(f"{source}: gpus and gpus_per_node are both given: with nodes, gpus already means "
                            f"GPUs per node (nodes=2,gpus=8); without nodes it is a total (gpus=16)")
            continue
        seen.add(key)
        try:
            data[key] = _convert(key, value if sep else None)
        except ValueError as exc:
            problems.append(f"{source}: {key}: {exc}")
    if problems:
        raise ConfigError("\n".join(problems), hint=_example(source))
    if "nodes" in data and "gpus" in data and "gpus_per_node" not in data:
        data["gpus_per_node"] = data.pop("gpus")
    return data


def _example(source: str) -> str:
    """The fix's example in the words of ``source``: the Python argument, else (a flag, a job's
    comment) the CLI's ``--request``."""
    if source == "request":
        return "example: request='nodes=4,gpus=8,within=leaf'"
    return "example: --request 'nodes=4,gpus=8,within=leaf'"


def _convert(key: str, value: str | None) -> Any:
    if key in _BOOLS:
        if value is None:
            return True
        if value.lower() not in _BOOL:
            raise ValueError(f"expected true/false, got {value!r}")
        return _BOOL[value.lower()]
    if value is None or value == "":
        raise ValueError("needs a value (key=value)")
    if key in _INTS:
        lo, hi = _int_bounds(key)
        number = int(value) if value.isascii() and value.isdigit() and len(value) <= 12 else None
        if number is None or number < lo or (hi is not None and number > hi):
            digits = " in ASCII digits 0-9" if not value.isascii() and value.isdigit() else ""
            raise ValueError(f"expected a positive whole number{f' ({lo} to {hi:,})' if hi else ''}{digits}, "
                             f"got {value!r}")
        return number
    if key == "features":
        return tuple(f.strip() for f in value.replace("+", "&").split("&") if f.strip())
    if key in _HOSTLISTS:
        return _hostlist(value)
    return value


def _hostlist(value: str) -> str:
    """A host list with ``;`` between items (the form a ``--comment`` needs) as Slurm writes it (``,``),
    checked: a malformed list or one of more than MAX_NAMES names is a ValueError naming the problem."""
    from fabric_hpc.hostlist import MAX_NAMES, count

    text = value.replace(";", ",")
    try:
        if any(not item.strip() for item in _split_items(text)):
            raise ConfigError(f"host list {value!r}: empty item")
        names = count(text)
    except ConfigError as exc:
        raise ValueError(exc.message.replace(repr(text), repr(value))) from None
    if names > MAX_NAMES:
        raise ValueError(f"host list {value!r} stands for more than {MAX_NAMES:,} names")
    return text


def _int_bounds(key: str) -> tuple[int, int | None]:
    """(least, most) a whole-number key takes (the field's ``ge``/``le``; most None: no bound)."""
    lo, hi = 1, None
    for m in Request.model_fields[key].metadata:
        lo, hi = getattr(m, "ge", lo), getattr(m, "le", hi)
    return lo, hi


def _what_divides(units: int, k: int, key: str, value: int, total: int | None = None,
                  shape: tuple[int, int, int | None] | None = None) -> str:
    """What would split: the values of ``key`` that divide ``units`` (the GPUs, or the tp groups for
    pp; with ``shape`` = (nodes, GPUs per node, tp), tp values that fit a host or fill whole hosts
    only), or the nearest request that keeps ``key=value`` (``k`` GPUs per step): a GPU count, or
    with ``shape`` nodes of G GPUs (G at most the GPUs per node asked, tp fitting it). job_submit.lua's
    what_divides says the same, word for word."""
    total = total if total is not None else units
    fits = [d for d in range(2, min(units, 1024) + 1) if not units % d]
    if shape is not None and key == "tp":
        fits = [d for d in fits if not shape[1] % d or not d % shape[1]]
    fits = fits[:8]
    if shape is None:
        keep = f"{-(-total // k) * k} GPUs for {key}={value}"
    else:
        nodes, gpn, tp = shape
        g = next(g for g in range(gpn, 0, -1) if not tp or not g % tp or not tp % g)
        step = k // math.gcd(g, k)
        keep = f"{-(-nodes // step) * step} nodes of {g} GPUs for {key}={value}"
    if not fits:
        return f" (use {keep})"
    values = ", ".join(map(str, fits[:-1])) + " or " if len(fits) > 1 else ""
    return f" (use {key} = {values}{fits[-1]}; or {keep})"
