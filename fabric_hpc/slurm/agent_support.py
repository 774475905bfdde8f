"""The placement agent's module-level helpers (:mod:`fabric_hpc.slurm.agent` re-exports them): its
lock and state directory, ``fabric agent status``, the first contact with Slurm and the checks of the
fabric model against Slurm's nodes, and the bounded one-line text of an error."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from fabric_hpc.errors import ConfigError, ExternalError, FabricError
from fabric_hpc.inputs import os_error, read_bytes, read_json
from fabric_hpc.pidlock import PidLock
from fabric_hpc.slurm.cli_backend import ChildTimeout, run_child
from fabric_hpc.slurm.contract import Node, RestAddressed, SlurmClient, SlurmError
from fabric_hpc.slurm.plugins import PROTOCOL_VERSION, plugin_dir
from fabric_hpc.topology import Fabric
from fabric_hpc.validation import parse_model


def agent_lock(state_dir: Path) -> PidLock:
    """Exclusive ``flock`` on ``<state_dir>/agent.lock`` holding the owner's pid."""
    return PidLock(state_dir / "agent.lock", mode=0o644,
                   busy=lambda owner: f"another fabric agent (pid {owner}) is active for {state_dir}",
                   hint="one agent per cluster: stop the other one (another --state-dir only for an agent of "
                        "another cluster; two agents on one cluster place the same jobs)")


#: the seconds the agent's last calls at stop (release_pins) may take, all together: well inside the
#: unit's TimeoutStopSec (30), after which systemd kills it (docs/slurm.md)
STOP_BUDGET_S = 15.0


@contextlib.contextmanager
def stop_budget(client: SlurmClient, seconds: float) -> Iterator[None]:
    """The client's requests take at most ``seconds`` each while inside (its ``timeout``: the cli and
    rest backends), and are sent again after an :meth:`interrupt` (the rest backend's stop)."""
    old = getattr(client, "timeout", None)
    if isinstance(old, (int, float)):
        client.timeout = min(old, seconds)  # type: ignore[attr-defined]
    if (resume := getattr(client, "resume", None)) is not None:
        resume()
    try:
        yield
    finally:
        if isinstance(old, (int, float)):
            client.timeout = old  # type: ignore[attr-defined]


def run_within(work: Callable[[], None], seconds: float, name: str) -> bool:
    """``work()`` in a daemon thread, waited for at most ``seconds`` (a call blocked in a library,
    pyslurm's, cannot be interrupted: it is left behind); True when it finished."""
    helper = threading.Thread(target=work, name=name, daemon=True)
    helper.start()
    helper.join(seconds)
    return not helper.is_alive()


def first_contact(client: SlurmClient, timeout_s: float,
                  stop: threading.Event | None = None) -> list[Node] | None:
    """The nodes Slurm reports, read within ``timeout_s``; SlurmError (exit 5) when it does not answer.

    The read runs in a helper thread so a call that blocks (an unreachable controller) cannot hold
    the caller up; ``stop`` set during the wait ends it at once (None returned). A client with a
    ``contact_probe`` (pyslurm, whose calls hold the GIL: no thread gets to time them out) is first
    asked through that command, in a child process killed at the deadline.
    """
    outcome: dict[str, Any] = {}
    stop = stop or threading.Event()
    deadline = time.monotonic() + timeout_s
    if (probe := getattr(client, "contact_probe", None)) is not None:  # pyslurm: a child with a deadline
        answered = _probe(probe(), deadline, stop)
        if answered is None:
            return None
        if not answered:
            raise _unanswered(client, timeout_s)
        deadline = time.monotonic() + timeout_s  # it answered: the read here gets its own time

    def read() -> None:
        try:
            outcome["nodes"] = client.nodes()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            outcome["error"] = exc

    helper = threading.Thread(target=read, name="fabric-agent-first-contact", daemon=True)
    helper.start()
    while helper.is_alive() and not stop.is_set() and time.monotonic() < deadline:
        helper.join(0.05)
    if stop.is_set():
        return None
    where = f"the {client.backend} backend"
    if helper.is_alive():
        raise _unanswered(client, timeout_s)
    if "error" in outcome:
        exc = outcome["error"]
        raise SlurmError(f"first contact with Slurm failed ({where}): {bounded(error_text(exc), 300)}",
                         hint=getattr(exc, "hint", None) or "is slurmctld up? (scontrol ping)") from None
    return list(outcome["nodes"])


def _unanswered(client: SlurmClient, timeout_s: float) -> SlurmError:
    where = f"the {client.backend} backend"
    if isinstance(client, RestAddressed):  # the one waited for is slurmrestd (it may wait for slurmctld)
        from fabric_hpc.slurm.client import shown_url

        return SlurmError(f"slurmrestd at {shown_url(client.url)} did not answer within {timeout_s:g} s "
                          f"({where})",
                          hint="is slurmrestd running and rest_url/--rest-url its address? (its log; a "
                               "slurmrestd still starting or busy answers late); is slurmctld up behind "
                               "it? (scontrol ping); or raise --contact-timeout")
    return SlurmError(f"Slurm did not answer within {timeout_s:g} s ({where})",
                      hint="is slurmctld up and SLURM_CONF right? (scontrol ping); "
                           "or raise --contact-timeout")


def _probe(argv: list[str], deadline: float, stop: threading.Event) -> bool | None:
    """Run ``argv`` until ``deadline``: True when it ended (answered, or failed: the read in this process
    then says how), False when it did not end in time (killed), None when ``stop`` was set (killed)."""
    try:
        return None if run_child(argv, deadline - time.monotonic(), stop=stop) is None else True
    except ChildTimeout:
        return False


def contact_answers(argv: list[str], seconds: float) -> bool:
    """Whether a client's ``contact_probe`` command ends within ``seconds`` (the agent's stop)."""
    return bool(_probe(argv, time.monotonic() + seconds, threading.Event()))


def gpu_mismatch(fab: Fabric, nodes: list[Node]) -> str | None:
    """Where Slurm's GPU count of a node (its GRES) differs from the fabric model's host, in words;
    None when they agree. The agent places on the model's GPUs, so such a node is planned wrongly."""
    wrong = [(n.name, n.gpus, len(fab.host_gpus(n.name))) for n in nodes
             if n.name in fab.host_pos and n.gpus != len(fab.host_gpus(n.name))]
    if not wrong:
        return None
    shown = ", ".join(f"{name} (Slurm {s}, model {m})" for name, s, m in wrong[:5])
    more = f" and {len(wrong) - 5} more" if len(wrong) > 5 else ""
    return f"{len(wrong)} node(s) have another GPU count in Slurm than in the fabric model: {shown}{more}"


def stop_reason(exc: Exception) -> dict[str, Any]:
    """``agent.stop``'s fields for a fatal error: the reason, its text and the exit code it ends with."""
    code = exc.exit_code if isinstance(exc, FabricError) else 1
    return {"reason": "error", "kind": type(exc).__name__, "error": bounded(error_text(exc)),
            "exit_code": code}


def error_text(exc: BaseException) -> str:
    """An exception as one line: a FabricError's message, else ``Type: text``."""
    text = exc.message if isinstance(exc, FabricError) else f"{type(exc).__name__}: {exc}"
    return " ".join(str(text).split())


def bounded(text: str, limit: int = 500) -> str:
    """``text`` cut to ``limit`` characters (an answer may be megabytes)."""
    cut = limit - 30  # room for the note
    return text if len(text) <= limit else text[:cut] + f"... (+{len(text) - cut} chars)"


def heartbeat_text(now: float) -> str:
    """``<state_dir>/heartbeat``: the time of the last good cycle, then the protocol the agent speaks
    (job_submit.lua defers jobs only for a fresh heartbeat of its own protocol)."""
    return f"{int(now)}\nprotocol={PROTOCOL_VERSION}\n"


def _plugin_dir_problem(st: os.stat_result) -> str | None:
    """Why a directory with this status may not hold the heartbeat (None: it may)."""
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        return "a symbolic link or not a directory"
    if st.st_uid not in (0, os.geteuid()):
        return f"owned by uid {st.st_uid}, not by root or this user (uid {os.geteuid()})"
    if st.st_mode & 0o022:
        return f"writable by others (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def _refused_dir(d: Path, problem: str) -> ConfigError:
    """The error of a plugin directory the agent will not write its heartbeat into (see
    :func:`open_plugin_dir`)."""
    return ConfigError(f"the job_submit plugin's directory {d} is {problem}: slurmctld writes its wake file "
                       "there, through any symbolic link put in its place; no heartbeat is written",
                       hint=f"remove {d} and run `fabric slurm install` (as root): it creates the directory, "
                            "root-owned, mode 0755")


def open_plugin_dir(d: Path) -> int:
    """A file descriptor of ``<state_dir>.plugin`` (made, mode 0755, when missing), checked on that
    descriptor: a real directory of root or this user that no one else may write, so that nothing can
    be swapped in between the check and the write. Inside it slurmctld (job_submit.lua: Lua's
    ``io.open`` follows symbolic links) rewrites ``wake`` for each job it defers while the heartbeat
    is fresh: in a directory another user made (``/tmp/fabric-agent.plugin`` pre-created) or may
    write, ``wake`` could be a symbolic link to any file root may write. Refused (a ConfigError), the
    agent writes no heartbeat there, so the plugin takes it for dead and writes nothing (jobs go to
    Slurm's own scheduler)."""
    try:
        with contextlib.suppress(FileExistsError):  # install made it, or an earlier cycle: checked below
            os.mkdir(d, 0o755)
    except PermissionError:
        raise ConfigError(f"cannot write the heartbeat {d / 'heartbeat'}: {d} is missing and cannot be "
                          "created by the agent",
                          hint="run `fabric slurm install` (as root): it creates the directory, "
                               "root-owned, and the heartbeat in it") from None
    try:
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _refused_dir(d, "a symbolic link or not a directory") from None
        raise
    problem = _plugin_dir_problem(os.fstat(fd))
    if problem is not None:
        os.close(fd)
        raise _refused_dir(d, problem)
    return fd


def write_heartbeat(state_dir: str | os.PathLike[str], now: float) -> None:
    """The heartbeat the plugin reads, ``<plugin_dir>/heartbeat``, rewritten in place (no rename: the
    agent may not create names there); never through a symlink or into a FIFO, and only in a plugin
    directory no one else controls (:func:`open_plugin_dir`). Without install (a test, a development
    run) the agent creates the directory and the file itself."""
    from fabric_hpc.events import open_regular

    d = plugin_dir(state_dir)
    data = heartbeat_text(now).encode()
    dfd = open_plugin_dir(d)
    try:
        fd = open_regular("heartbeat", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=dfd, shown=d / "heartbeat")
    except PermissionError:
        raise ConfigError(f"cannot write the heartbeat {d / 'heartbeat'}: the agent (uid {os.geteuid()}) may "
                          "not create or write it",
                          hint="run `fabric slurm install` (as root): it creates the directory, "
                               "root-owned, and the heartbeat in it") from None
    finally:
        os.close(dfd)
    try:
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


class StatusFile(BaseModel):
    """The fields of ``status.json`` that ``fabric agent status`` reads, typed (others are kept as they are:
    a later agent may add some). All optional: a failed first cycle writes only some."""

    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False)
    pid: Annotated[int, Field(ge=0)] | None = None
    ts: Annotated[float, Field(ge=0)] | None = None
    cycles: Annotated[int, Field(ge=0)] = 0
    cycle_s: Annotated[float, Field(ge=0)] = 0.0
    fallback_s: Annotated[float, Field(gt=0)] = 60
    errors: Annotated[int, Field(ge=0)] = 0
    failed_actions: Annotated[int, Field(ge=0)] = 0
    last_error: str | None = None
    last_action_error: str | None = None
    waiting: dict[str, str] = {}


def check_status_file(path: Path, data: object) -> None:
    """ConfigError (exit 3) naming each field of ``status.json`` of the wrong type, with the fix."""
    parse_model(StatusFile, data, source=str(path),
                hint="the agent rewrites it every cycle; remove it (and restart the agent if it does not "
                     "run)")


def read_status(state_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """What ``fabric agent status`` shows: the last cycle, the heartbeat age, the lock holder."""
    d = Path(state_dir)
    if not d.is_dir():
        raise ConfigError(f"no agent state directory {d}", hint="pass the --state-dir the agent runs with")
    status: dict[str, Any] = {}
    if (d / "status.json").exists():
        status = read_json(d / "status.json", what="agent status file", limit=64 << 20)  # never blocks
        tried = (d / "status.json").stat().st_mtime  # a failed write touches it (Agent._error)
        if isinstance(status.get("ts"), (int, float)) and tried - status["ts"] > 1:
            status["status_file_stale"], status["status_file_tried"] = True, round(tried, 3)
    beat = read_bytes(d / "heartbeat", what="agent heartbeat file", limit=64).decode("ascii", "replace") \
        .partition("\n")[0].strip() if (d / "heartbeat").exists() else ""
    status["heartbeat_age_s"] = round(time.time() - int(beat), 1) if beat.isdigit() else None
    status["lock_holder"] = agent_lock(d).holder()
    status["running"] = status["lock_holder"] is not None
    return status


def state_dir_unwritable(path: str | os.PathLike[str]) -> ConfigError | None:
    """Why the agent could not write its existing state dir (exit 3: a local problem, not Slurm's), or None:
    a read-only filesystem (whoever runs it), or a directory this user may not write."""
    try:
        read_only = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    if read_only:
        return ConfigError(f"state dir {path} is on a read-only filesystem",
                           hint="remount it read-write (mount -o remount,rw), or set agent.state_dir "
                                "(--state-dir) to a directory on a writable filesystem")
    if not os.access(path, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids):
        return ConfigError(f"state dir {path} is not writable by this user (uid {os.geteuid()})",
                           hint="run as the service user that owns it (fabric slurm install sets it)")
    return None


def cycle_error(exc: Exception, state_dir: Path) -> Exception:
    """A failed cycle's error as said in its log: a file of the state dir that could not be written for
    a full or read-only disk becomes one line naming the disk and the fix (the agent retries itself)."""
    if not isinstance(exc, OSError) or exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        return exc
    what = f"cannot write {exc.filename}" if exc.filename is not None else "cannot write a file"
    if exc.errno == errno.EROFS:
        return ExternalError(f"{what}: the filesystem holding {state_dir} is read-only",
                             hint="remount it read-write (mount -o remount,rw); the agent retries every "
                                  "cycle")
    return ExternalError(f"{what}: the disk holding {state_dir} is full ({os.strerror(exc.errno)})",
                         hint=f"free space on it (df {state_dir}; or raise the quota); the agent retries "
                              "every cycle")


def state_dir_world_writable(path: str | os.PathLike[str]) -> ConfigError | None:
    """The refusal of a state dir every user may write (sticky or not: anyone could put their own
    ``usage.json``, ``qos.json``, ``deferrals.json``, ``status.json`` or audit log in place for the
    agent and ``fabric slurm why`` to believe), or None."""
    mode = os.stat(path).st_mode
    if not mode & stat.S_IWOTH:
        return None
    return ConfigError(f"state dir {path} is writable by every user (mode {stat.S_IMODE(mode):o}): any of "
                       "them could replace the agent's files there",
                       hint=f"chmod o-w {path} (fabric slurm install makes it 0750, the service user's)")


def check_state_dir(path: Path) -> None:
    """The agent's state directory, checked before anything is written there (exit 3 when wrong):
    a missing one is created only inside an existing directory (``fabric slurm install`` makes the
    whole path, owned by the service user); an existing one must be writable by this user and by no
    one else (:func:`state_dir_world_writable`)."""
    if path.is_dir():
        if problem := state_dir_unwritable(path) or state_dir_world_writable(path):
            raise problem
        return
    hint = "fabric slurm install creates it (owned by the service user); or pass an existing --state-dir"
    if os.path.lexists(path):
        raise ConfigError(f"state dir {path} is not a directory",
                          hint=f"remove it, or choose another path; {hint}")
    if not path.parent.is_dir():
        raise ConfigError(f"no state dir {path}, and its parent {path.parent} does not exist either",
                          hint=hint)
    try:
        path.mkdir(mode=0o750)
    except FileExistsError:
        pass  # created meanwhile
    except OSError as exc:  # a read-only or full filesystem, no permission: the system's, exit 5
        error = os_error(exc, "state dir", path)
        raise type(error)(f"cannot create state dir {path}: {exc.strerror or exc}", hint=hint) from None


def model_overlap(fab: Fabric, slurm_nodes: list[str]) -> str:
    """How the fabric model's hosts and Slurm's nodes overlap, in words; ConfigError (exit 3) when not at all.

    Model hosts Slurm does not list are unusable (down) for the agent; Slurm nodes outside the
    model are Slurm's alone."""
    names, hosts = set(slurm_nodes), set(fab.host_pos)
    both = names & hosts
    if not both:
        raise ConfigError(f"none of Slurm's {len(names)} nodes is a host of the fabric model "
                          f"({len(hosts)} hosts)",
                          hint="the fabric model's host names must be Slurm's NodeNames")
    text = f"{len(names)} nodes, {len(both)} in the fabric model"
    if missing := len(hosts - names):
        text += f"; {missing} of the model's {len(hosts)} hosts are not in Slurm (never used)"
    return text


def compact_holds(policy: Any, fab: Fabric, pending: dict[str, Any], waiting: dict[int, str]
                  ) -> dict[str, dict[str, Any]]:
    """For each job the policy holds for a compact placement (waiting reason ``Topology``): ``until``
    (when its hold ends: the policy's ``hold_until``, None where it has none), ``domains`` and
    ``level`` (it waits for a placement in at most ``domains`` domains of ``level``), by job id (text),
    for the ``agent.waiting`` record that `fabric slurm why` reads."""
    from fabric_hpc.scheduler.contract import HoldsJobs
    from fabric_hpc.scheduler.placer import compact_job

    out: dict[str, dict[str, Any]] = {}
    for job_id, reason in waiting.items():
        if reason != "Topology" or (p := pending.get(str(job_id))) is None:
            continue
        held = compact_job(p.job, fab).request
        until = policy.hold_until(p.job) if isinstance(policy, HoldsJobs) else None
        out[str(job_id)] = {"until": until, "domains": held.max_domains, "level": held.max_domains_level}
    return out


#: Most job ids listed in a reservation's ``after``.
MAX_AFTER = 20


def reserved_facts(reservations: Mapping[str, Any], running: Sequence[Any], waiting: Mapping[int, str]
                   ) -> dict[str, dict[str, Any]]:
    """For each waiting job the policy reserved GPUs for (``Decisions.reservations``): ``start`` (when it
    is expected to start at the latest: the running jobs' time limits), ``hosts`` (how many) and ``after``
    (the Slurm jobs holding those GPUs now, whose end it waits for; at most :data:`MAX_AFTER`), by job id
    (text), for the ``agent.waiting`` record and ``status.json`` that `fabric slurm why` reads."""
    out: dict[str, dict[str, Any]] = {}
    for job_id, r in reservations.items():
        if not job_id.isdigit() or int(job_id) not in waiting:
            continue
        gpus = set(r.gpus)
        after = sorted({int(run.job.meta.get("slurm_job", 0)) for run in running
                        if gpus.intersection(run.gpus)} - {0})
        out[job_id] = {"start": r.start, "hosts": len({g.rpartition("/")[0] for g in gpus}),
                       "after": after[:MAX_AFTER]}
    return out


def agent_settings(config: Any) -> dict[str, Any]:
    """The settings an agent runs with (every ``AgentConfig`` field but ``state_dir``): read once at its start
    (SIGHUP only reopens the logs), recorded in ``status.json`` for ``fabric agent check``."""
    from fabric_hpc.slurm.agent_config import AgentConfig

    return {k: getattr(config, k) for k in AgentConfig.model_fields if k != "state_dir"}


def settings_differ(running: Mapping[str, Any], config: Any, installed: Any = None) -> list[str]:
    """``KEY RUNNING (this config: VALUE)`` for each recorded setting of a running agent that ``config`` (an
    ``AgentConfig``) sets otherwise (``fallback_s``: compared with job_submit.lua by the caller). A value
    that ``installed`` (``config`` as install writes it: :func:`~fabric_hpc.slurm.unit.installed_agent`,
    its paths rewritten) has is no difference: the check may read the source config or the installed one."""
    mine = agent_settings(config)
    theirs = agent_settings(installed) if installed is not None else mine
    return [f"{k} {running[k]!r} (this config: {mine[k]!r})" for k in sorted(running)
            if k in mine and k != "fallback_s" and running[k] != mine[k] and running[k] != theirs[k]]


def running_settings(pid: int, status: Mapping[str, Any], config: Any, installed: Any = None) -> str:
    """``fabric agent check``: the running agent's settings (its ``status.json`` ``settings``) are
    ``config``'s (or ``installed``'s: :func:`settings_differ`); ConfigError naming those that are not
    (read at its start: a restart applies them)."""
    from fabric_hpc.slurm.manifest import UNIT_NAME

    if not isinstance(settings := status.get("settings"), dict):
        return "its other settings not recorded (an agent from before 2026-12-06)"
    if differ := settings_differ(settings, config, installed):
        raise ConfigError(f"the running agent (pid {pid}) runs other settings than this config: "
                          f"{'; '.join(differ)}", hint=f"restart the agent to apply this config: systemctl "
                          f"restart {UNIT_NAME} (SIGHUP only reopens its logs)")
    return "its other settings as this config"


def running_model(pid: int, status: Mapping[str, Any], fab: Any, ref: str,
                  installed: str | None = None) -> str:
    """``fabric agent check``: the running agent places on ``fab`` (this config's model, from ``ref``), as its
    ``status.json`` ``model`` digest says (read at its start: a new or re-cabled model applies on a restart);
    ConfigError otherwise, whose fix says whether ``installed`` (the copy ``fabric slurm install`` wrote,
    which the agent reads) must be installed again first. Not compared (said so): no model loaded here
    (its own row fails), or none recorded (an agent from before 2026-12-07)."""
    from fabric_hpc.slurm.manifest import UNIT_NAME
    from fabric_hpc.topology.io import load_fabric, model_digest

    model = status.get("model")
    if fab is None or not isinstance(model, dict):
        return "its fabric model not compared" + ("" if fab is None else " (not recorded by this agent)")
    mine = model_digest(fab)
    if model.get("digest") == mine:
        return "its fabric model as this config's"
    copy = None
    if installed and Path(installed) != Path(ref) and os.path.isfile(installed):  # no raise: False
        try:
            copy = model_digest(load_fabric(installed))
        except FabricError:
            copy = None
    restart = f"restart the agent: systemctl restart {UNIT_NAME} (it reads the model at its start only)"
    if copy is not None and copy != mine:
        where = "is the agent's" if model.get("digest") == copy else "differs too"
        restart = (f"install this config's model first ({installed} {where}): fabric slurm install, then "
                   + restart)
    raise ConfigError(f"the running agent (pid {pid}) places on another fabric model than {ref} "
                      f"({model.get('hosts')!r} hosts; this config's model: {len(fab.hosts)} hosts, "
                      "other hosts, links or GPUs)", hint=restart)


def withdraw_pins(withdrawn: Mapping[int, Sequence[str]], res: Any) -> None:
    """The cycle's actions for the pins the view withdrew (``View.withdrawn``): one placed on the same hosts
    again is left as it is (no second pin), one left waiting has its pin cleared (``res.unpinned``, reason
    ``withdrawn``; the unpin defers it), so that Slurm does not start it on the hosts a higher tier gets."""
    if not withdrawn:
        return
    res.started = [s for s in res.started
                   if s["job"] not in withdrawn or set(s["hosts"]) != set(withdrawn[s["job"]])]
    for job_id in withdrawn:
        if job_id in res.waiting:
            res.unpinned[job_id] = "withdrawn"
    res.deferred = [j for j in res.deferred if j not in res.unpinned]
