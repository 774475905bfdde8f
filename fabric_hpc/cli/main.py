"""``fabric``: the admin CLI.

Command groups live one per module (``fabric_hpc/cli/<group>.py``, each exposing ``group``)
and are imported only when invoked, so ``fabric topology ...`` never pays for torch or MPI.
Errors are mapped to exit codes in one place, :func:`main`:

====  =====================================================================
 0    success
 1    internal error (a bug: the traceback is printed)
 2    usage error (unknown option, missing argument)
 3    bad input or configuration (file, request, flag value)
 4    infeasible (a valid request that cannot be satisfied now)
 5    external system error (Slurm, MPI, NVML, disk)
====  =====================================================================
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import logging
import sys
from collections.abc import Sequence

import click

from fabric_hpc import __version__
from fabric_hpc.errors import EXIT_OK, EXIT_USAGE, FabricError, one_line
from fabric_hpc.events import JsonLinesFormatter

# name -> (module, one-line help). Add a line here when a subsystem gains a command group.
COMMAND_GROUPS: dict[str, tuple[str, str]] = {
    "topology": ("fabric_hpc.cli.topology",
                 "Fabric model: generate, import, discover, assemble, validate, show, export, report."),
    "place": ("fabric_hpc.cli.place", "Topology-aware gang placement (cpsat, greedy, Slurm baselines), explained."),
    "infer": ("fabric_hpc.cli.infer", "Batch inference harness: prepare, run, status, merge, bench."),
    "slurm": ("fabric_hpc.cli.slurm", "Slurm through fabric's client: jobs, nodes, why a job waits, report; "
              "install, uninstall, plugin-config, topo-files, jobscripts."),
    "agent": ("fabric_hpc.cli.agent", "The Slurm placement agent: run (daemon), check, status."),
    "ckpt": ("fabric_hpc.cli.ckpt", "Checkpoints: list, show, verify, restore --to-world-size, prune; "
             "export/import (HDF5), export-hf/import-hf, export-dcp/import-dcp, convert."),
    "sim": ("fabric_hpc.cli.sim",
            "Cluster simulator: run (replay traces through scheduling policies), compare, demo."),
    "docs": ("fabric_hpc.cli.docs", "The documentation pages (docs/*.md, also in the wheel): `fabric docs` "
             "lists them, `fabric docs PAGE` prints one."),
}


class Stopped(BaseException):
    """A command stopped by Ctrl-C or SIGTERM (:class:`Terminated`): the KeyboardInterrupt carried past
    click's ``main``, which writes a blank line to stderr (not an event, not a documented line) for a
    KeyboardInterrupt before it turns it into ``Abort``. :func:`_run` says it in its own line."""

    def __init__(self, interrupt: KeyboardInterrupt) -> None:
        super().__init__(str(interrupt))
        self.interrupt = interrupt


class LazyGroup(click.Group):
    """A click group whose subgroups are imported on first use."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:  # commands have cleaned up as for any interrupt by now
            raise Stopped(exc) from exc

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMAND_GROUPS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMAND_GROUPS:
            module = importlib.import_module(COMMAND_GROUPS[cmd_name][0])
            return module.group
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMAND_GROUPS[name][1]) for name in sorted(COMMAND_GROUPS)]
        extra = [(n, c.get_short_help_str()) for n, c in sorted(self.commands.items())]
        with formatter.section("Commands"):
            formatter.write_dl(sorted(rows + extra))


def configure_logging(verbosity: int) -> None:
    """Events and logs to stderr as JSON lines: -q errors only, default warnings, -v events."""
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLinesFormatter())
    root = logging.getLogger("fabric_hpc")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="fabric")
@click.option("-v", "--verbose", count=True,
              help="More output: -v shows JSON events on stderr (beside the human error: lines; "
                   "`fabric docs events`), -vv debug.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
def cli(verbose: int, quiet: bool) -> None:
    """fabric-hpc: fabric-aware placement, scheduling, checkpoints and inference for Slurm."""
    configure_logging(-1 if quiet else verbose)
    _LOGGING[0] = True


#: whether :func:`cli` configured the logging of this run (not when click failed before it ran)
_LOGGING = [False]


def _leading_verbosity(argv: Sequence[str] | None) -> int:
    """``-v``/``-q`` as :func:`cli` would have read them, from fabric's own flags before the first word:
    for a usage error click raises before :func:`cli` runs (``fabric -v nosuch``)."""
    args = argv if argv is not None else sys.argv[1:]
    verbose, quiet = 0, False
    for arg in itertools.takewhile(lambda a: a.startswith("-"), args):
        if arg in ("--verbose", "--quiet"):
            verbose, quiet = verbose + (arg == "--verbose"), quiet or arg == "--quiet"
        elif not arg.startswith("--"):
            verbose, quiet = verbose + arg.count("v"), quiet or "q" in arg
    return -1 if quiet else verbose


class Terminated(KeyboardInterrupt):
    """SIGTERM (Slurm's signal at a time limit or scancel): unwound like Ctrl-C, so every command
    cleans up as it does for an interrupt (temporary files removed, locks released), then exits 143
    with one line instead of dying at once."""

    exit_code = 143


class HungUp(Terminated):
    """SIGHUP (the terminal or ssh session of a command started by hand went away): as SIGTERM, exit 129."""

    exit_code = 129


def _terminate(signum: int, frame: object) -> None:
    import signal

    if signum == signal.SIGHUP:
        raise HungUp("terminated (SIGHUP)")
    raise Terminated("terminated (SIGTERM)")


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point: run the CLI and map errors to exit codes (never a traceback
    for a user mistake)."""
    import signal
    import threading

    previous = hangup = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)  # the agent installs its own while it runs
        if signal.getsignal(signal.SIGHUP) is signal.SIG_DFL:  # nohup's SIG_IGN stays
            hangup = signal.signal(signal.SIGHUP, _terminate)
    log = logging.getLogger("fabric_hpc")
    saved = (log.handlers[:], log.level, log.propagate)  # (configure_logging's, for this run only:
    strict = _escape_stdout()
    try:  # a caller running main() in its own process keeps its logging, and no handler outlives the
        return _run(argv)  # stderr it writes to)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if hangup is not None:
            signal.signal(signal.SIGHUP, hangup)
        log.handlers[:], log.level, log.propagate = saved
        if strict:
            sys.stdout.reconfigure(errors="strict")  # type: ignore[union-attr]


def _escape_stdout() -> bool:
    """A file name that is not UTF-8 (a lone surrogate as Python reads it) printed on a strict UTF-8
    stdout (``LANG=en_US.UTF-8``) ended the command in a UnicodeEncodeError: write it escaped (``\\udcff``),
    as stderr's lines and the JSON events do. True when stdout was changed (restored after the run)."""
    if getattr(sys.stdout, "errors", None) != "strict" or not hasattr(sys.stdout, "reconfigure"):
        return False
    try:
        sys.stdout.reconfigure(errors="backslashreplace")
    except (ValueError, OSError):  # a closed or detached stream: left as it is
        return False
    return True


def _json_error(argv: Sequence[str] | None, exc: FabricError, code: int) -> None:
    """With ``--json``, the error as a JSON document on stdout too (unless the command already wrote
    its own), so a script reading stdout always gets JSON."""
    from fabric_hpc.cli.output import JSON_WRITTEN, print_json

    args = list(argv) if argv is not None else sys.argv[1:]
    if "--json" in args and not JSON_WRITTEN[0]:
        print_json({**exc.to_dict(), "exit_code": code})


def _error_event(argv: Sequence[str] | None, exc: FabricError, code: int) -> None:
    """A failed command as the ``cli.error`` event too (``-v``: a JSON line on stderr before the human
    ``error:``/``fix:`` lines), so a reader of the events alone sees why the command ended."""
    from fabric_hpc.events import emit

    emit("cli.error", command=_command(argv), error=exc.message, hint=exc.hint, exit_code=code)


def _lines(prefix: str, text: str) -> str:
    """``prefix`` and ``text``, a line per line of it (an error that lists several problems), each
    further line indented under the first: no line but an event's begins with ``{``; other control
    characters escaped (:func:`one_line`)."""
    first, *rest = text.split("\n")
    return "\n".join([prefix + one_line(first)] + [" " * len(prefix) + one_line(line) for line in rest])


def _echo_error(exc: FabricError) -> None:
    """The human lines of a failure: ``error: …`` and, with a hint, ``  fix: …`` (a problem per line,
    the lines after the first indented), in one write: a rank under srun whose step is being killed
    (another rank failed) got its ``error:`` line through and lost the ``fix:`` line."""
    text = _lines("error: ", exc.message)
    if exc.hint:
        text += "\n" + _lines("  fix: ", exc.hint)
    click.echo(text, err=True)


def _usage_error(exc: click.ClickException) -> FabricError:
    """A click error as the ``cli.error`` fields: the hint is the help of the command whose usage was
    wrong (``fabric ckpt --help`` for ``fabric ckpt nosub``: click's context, not the words typed)."""
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "fabric"
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):  # its message is the whole help page
        return FabricError("Missing command.", hint=f"{where} --help")
    return FabricError(exc.format_message(), hint=f"{where} --help")


def _command(argv: Sequence[str] | None) -> str:
    """``fabric <group> <command>`` of the command line (fabric's own flags, such as -v, take no value)."""
    args = itertools.dropwhile(lambda a: a.startswith("-"), argv if argv is not None else sys.argv[1:])
    return " ".join(["fabric", *list(itertools.takewhile(lambda a: not a.startswith("-"), args))[:2]])


def _closed_pipe() -> int:
    """Exit 0 quietly after the reader of stdout went away: stdout is pointed at /dev/null so the
    interpreter's final flush cannot fail again ("Exception ignored ... BrokenPipeError")."""
    import os

    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return EXIT_OK


def _stopped(argv: Sequence[str] | None, interrupt: BaseException | None, word: str) -> int:
    """A command stopped by SIGTERM (143), SIGHUP (129) or Ctrl-C (130): one line, the ``cli.error``
    event, and with ``--json`` the JSON document on stdout as for any other failure."""
    terminated = isinstance(interrupt, Terminated)
    text, code = (str(interrupt), interrupt.exit_code) if isinstance(interrupt, Terminated) else (word, 130)
    if not terminated and sys.stderr.isatty():  # a terminal's "^C" echo ends its line (no log reads it)
        click.echo("", err=True)
    stop = FabricError(text)
    _error_event(argv, stop, code)
    click.echo(text, err=True)
    _json_error(argv, stop, code)
    return code


def _run(argv: Sequence[str] | None) -> int:
    output = sys.modules.get("fabric_hpc.cli.output")  # not imported here: --help stays light
    if output is not None:
        output.JSON_WRITTEN[0] = False
    _LOGGING[0] = False
    try:
        result = cli.main(args=list(argv) if argv is not None else None, prog_name="fabric",
                          standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except SystemExit as exc:  # rich's console ends a write to a closed pipe with SystemExit(1)
        if isinstance(exc.__context__, BrokenPipeError):
            return _closed_pipe()
        raise
    except Stopped as exc:  # Ctrl-C or SIGTERM inside a command ("aborted", as click's Abort said it)
        code = _stopped(argv, exc.interrupt, "aborted")
    except click.exceptions.Abort as exc:  # click's wrapping of a KeyboardInterrupt outside a command
        code = _stopped(argv, exc.__cause__ or exc.__context__, "aborted")
    except click.ClickException as exc:
        code = exc.exit_code if exc.exit_code else EXIT_USAGE
        if not _LOGGING[0]:  # click failed on fabric's own flags or the group's name: -v not read yet
            configure_logging(_leading_verbosity(argv))
        usage = _usage_error(exc)
        _error_event(argv, usage, code)
        if not isinstance(exc, click.exceptions.NoArgsIsHelpError):  # that one's message is our help page
            # click's own lines: the usage, then "Error: …" (show() adds the option's name again)
            exc.message = one_line(exc.message)
        exc.show()
        _json_error(argv, usage, code)
    except FabricError as exc:
        _error_event(argv, exc, exc.exit_code)
        _echo_error(exc)
        code = exc.exit_code
        _json_error(argv, exc, code)
    except OSError as exc:  # a user path the command did not check itself: still one clear line
        if isinstance(exc, BrokenPipeError):  # `fabric ... | head`: the reader is done, nothing to say
            return _closed_pipe()
        from fabric_hpc.inputs import os_error

        err = os_error(exc)
        _error_event(argv, err, err.exit_code)
        _echo_error(err)
        code = err.exit_code
        _json_error(argv, err, code)
    except KeyboardInterrupt as exc:
        code = _stopped(argv, exc, "interrupted")
    else:
        code = result if isinstance(result, int) else 0
    return code


if __name__ == "__main__":
    sys.exit(main())
