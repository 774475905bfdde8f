"""The placement contract: what every solver takes and returns.

A solver is a callable ``solve(problem, options) -> Placement`` registered by name in
:data:`fabric_hpc.placement.solve.SOLVERS` (networkx style: the algorithm is a parameter). It
never mutates the cluster state; it raises :class:`PlacementInfeasible` when no placement exists
(or, for the Slurm baselines, when Slurm's algorithm would not find one).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from fabric_hpc.errors import InfeasibleError

if TYPE_CHECKING:
    from fabric_hpc.placement.problem import Problem


#: The one set of bounds of :class:`SolveOptions` (``fabric place`` takes its flags with the same):
#: name -> (least, most, whole number, least excluded).
SOLVE_OPTION_BOUNDS: dict[str, tuple[float, float, bool, bool]] = {
    "time_limit_s": (0.0, 3600.0, False, True), "workers": (1, 256, True, False),
    "seed": (0, 2**31 - 1, True, False), "host_item_limit": (0, 10**7, True, False),
    "relative_gap": (0.0, 1.0, False, False)}


@dataclass(frozen=True)
class SolveOptions:
    """Knobs shared by the solvers (CP-SAT uses all of them, the heuristics ignore most). A value
    outside :data:`SOLVE_OPTION_BOUNDS` is a ConfigError naming the field and its range."""

    #: CP-SAT's deterministic time limit in (0, 3600] (a work count, about seconds on an idle core; the
    #: answer does not depend on machine load); after it the best feasible answer is returned, not optimal.
    time_limit_s: float = 1.0
    #: CP-SAT search workers (1..256). 1 by default: deterministic and leaves the other core to the scheduler.
    workers: int = 1
    seed: int = 0
    #: Above this many candidate hosts CP-SAT decides per domain first (hierarchical decomposition;
    #: 0: always, a mode of its own, not "no limit").
    host_item_limit: int = 192
    #: Relative gap at which CP-SAT may stop (0 = prove optimality).
    relative_gap: float = 0.0

    def __post_init__(self) -> None:
        import math

        from fabric_hpc.errors import ConfigError

        for name, (lo, hi, whole, lo_open) in SOLVE_OPTION_BOUNDS.items():
            value = getattr(self, name)
            number = isinstance(value, int) if whole else isinstance(value, (int, float))
            if isinstance(value, bool) or not number or not math.isfinite(value) or not lo <= value <= hi \
                    or (lo_open and value == lo):
                kind = "a whole number" if whole else "a finite number"
                span = f"{'(' if lo_open else '['}{_number(lo)}, {_number(hi)}]"
                raise ConfigError(f"SolveOptions.{name} must be {kind} in {span}, got {value!r}",
                                  hint=f"e.g. SolveOptions({name}={getattr(SolveOptions, name)!r})")

    @classmethod
    def of(cls, fields: Any) -> SolveOptions:
        """From a mapping of its fields (an unknown name is a ConfigError naming the valid ones)."""
        from fabric_hpc.errors import ConfigError

        unknown = sorted(set(fields) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"unknown solver option(s) {unknown}", hint=f"valid: {', '.join(cls.__dataclass_fields__)}")
        return cls(**fields)


def _number(x: float) -> str:
    """3600.0 -> "3,600", 0.5 -> "0.5"."""
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


@dataclass(frozen=True)
class Placement:
    """A decision and its explanation."""

    gpus: tuple[str, ...]
    hosts: tuple[str, ...]
    solver: str
    cost: float
    #: The cost split into its terms (see docs/placement.md), plus domains spanned per level.
    breakdown: dict[str, float]
    domains: dict[str, int]
    optimal: bool | None  # True: proven optimal for the cost model; False: not proven; None: heuristic
    time_s: float
    slices: tuple[tuple[str, ...], ...] = ()
    notes: tuple[str, ...] = ()
    stats: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (lists, not tuples): what ``fabric place --json`` prints."""
        d = asdict(self)
        d["gpus"], d["hosts"] = list(self.gpus), list(self.hosts)
        d["slices"] = [list(s) for s in self.slices]
        d["notes"] = list(self.notes)
        return d


class PlacementInfeasible(InfeasibleError):
    """No placement satisfies the request now. ``explanation`` says which constraint binds:

    ``{"constraint": "within", "needed": 64, "largest": 48, "where": "r003", "level": "nvlink",
    "unit": "GPUs", "blocking_jobs": 3, "solver": "cpsat"}``
    """

    def __init__(self, message: str, *, explanation: dict[str, Any], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.explanation = explanation

    def to_dict(self) -> dict[str, Any]:
        """The error for machines (``--json``): message, hint, exit code and the ``explanation``."""
        return {**super().to_dict(), "explanation": self.explanation}


class Solver(Protocol):
    def __call__(self, problem: Problem, options: SolveOptions) -> Placement: ...
