"""The one error tree of fabric-hpc.

Every error the library raises on purpose derives from :class:`FabricError`. Each class also
inherits the builtin it resembles (as zarr does), so ``except ValueError`` keeps working for
callers that do not know our types. Each carries an optional ``hint``: the fix, in words a user
can act on. The CLI maps the classes to exit codes in one place (``EXIT_CODES`` below).
"""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_BAD_INPUT = 3
EXIT_INFEASIBLE = 4
EXIT_EXTERNAL = 5


class FabricError(Exception):
    """Base of every deliberate fabric-hpc error."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  fix: {self.hint}"
        return self.message

    def to_dict(self) -> dict[str, Any]:
        """The error for machines (``--json``): message, hint, exit code and any structured facts."""
        return {"error": self.message, "hint": self.hint, "exit_code": self.exit_code}

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled (a process pool, multiprocessing) and copied without calling __init__ again: a
        # subclass's keyword-only fields (``explanation=``, ``source=``) live in __dict__.
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


def _rebuild(cls: type[FabricError], args: tuple[Any, ...], state: dict[str, Any]) -> FabricError:
    # the builtin base with the widest C layout (OSError's for NotFoundError) must allocate it
    base = max((b for b in cls.__mro__ if b.__module__ == "builtins" and issubclass(b, BaseException)),
               key=lambda b: b.__basicsize__)
    exc = base.__new__(cls, *args)
    exc.args = args
    exc.__dict__.update(state)
    return exc


class ConfigError(FabricError, ValueError):
    """Bad input or configuration: a file, a request, a flag value. Exit code 3."""

    exit_code = EXIT_BAD_INPUT


class NotFoundError(ConfigError, FileNotFoundError):
    """A named file, checkpoint, job or host does not exist. Exit code 3."""


class InfeasibleError(FabricError):
    """A valid request that cannot be satisfied now (no placement, no capacity). Exit code 4."""

    exit_code = EXIT_INFEASIBLE


class ExternalError(FabricError, RuntimeError):
    """An external system failed or answered something we cannot trust (Slurm, MPI, NVML, disk).

    Exit code 5.
    """

    exit_code = EXIT_EXTERNAL


def exit_code_for(exc: BaseException) -> int:
    """The CLI exit code for an exception (1 for anything that is not a FabricError)."""
    if isinstance(exc, FabricError):
        return exc.exit_code
    return EXIT_FAILURE


def require_whole(value: Any, what: str, *, minimum: int = 0, error: type[FabricError] = ConfigError,
                  hint: str | None = None) -> int:
    """``value`` if it is a whole number (an int, not a bool, not a float or string) of at least
    ``minimum``; else ``error`` naming ``what`` — the one check for counts and sizes a caller passes."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise error(f"{what} must be a whole number >= {minimum}, got {type(value).__name__} {value!r:.40}",
                    hint=hint or f"e.g. {what.rsplit('.', 1)[-1]}={max(minimum, 1)}")
    return value


#: line breaks and other control characters (C0 but tab, DEL, C1, the Unicode line and paragraph
#: separators: YAML 1.1 (libyaml, slurmctld's topology.yaml reader) and Python's str.splitlines break
#: lines at U+0085, U+2028 and U+2029 too)
_CONTROL = {c: repr(chr(c))[1:-1] for c in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029] if c != 0x09}


def one_line(text: str) -> str:
    """``text`` for one line (of a message on stderr, or a generated file's comment): control
    characters escaped as Python writes them (``\\n``, ``\\r``, ``\\x1b``, ``\\u2028``), so a newline in
    a user's argument cannot start a line of its own (beside ``-v``'s JSON events, a forged one)."""
    return text.translate(_CONTROL)


def control_escapes(text: str) -> list[str]:
    """The control characters of ``text`` (those :func:`one_line` escapes, and tab), each once, escaped."""
    return sorted({repr(ch)[1:-1] for ch in text if ch == "\t" or ord(ch) in _CONTROL})
