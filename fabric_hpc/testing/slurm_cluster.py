"""A real, throw-away Slurm cluster on loopback, for tests and for trying things by hand.

:class:`SlurmTestCluster` starts, as root and inside one directory, its own ``munged`` (own key
and socket), ``slurmctld`` and one ``slurmd -N <node>`` per emulated node, all on 127.0.0.1 with
ports drawn at random below the ephemeral range. Fake GPUs are character devices
(``mknod <dir>/nvidiaN c 195 N``) so GPU GRES is kept by slurmd and jobs get
``CUDA_VISIBLE_DEVICES``. Every daemon runs in the foreground as a child of this process (so it is
stopped by its pid and reaped) and is told by the kernel to exit if this process dies.

Nothing is written outside ``base_dir``. See ``docs/testing.md``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from fabric_hpc.errors import ConfigError, ExternalError
from fabric_hpc.testing import _accounting
from fabric_hpc.testing import _slurm_config as conf
from fabric_hpc.testing._installs import SlurmInstall
from fabric_hpc.testing._logs import LogsMixin, log_sizes, port_clash, set_aside_logs
from fabric_hpc.testing._slurm_client import INSTALL_HINT, SlurmClient
from fabric_hpc.testing._processes import (
    DAEMON_MARK,
    alive,
    descendants,
    listens,
    orphans,
    die_with_parent,
    processes_in_dir,
    processes_with_env,
    resolves_to_loopback,
    terminate,
)
from fabric_hpc.testing._slurm_config import NodeSpec

REQUIRED_COMMANDS = ("munged", "slurmctld", "slurmd", "sinfo", "scontrol", "sbatch", "srun", "squeue")
MAX_FABRIC_HOSTS = 128
MUNGE_PARENT, MUNGE_PREFIX = "/tmp", "fabric-munge-"  # munged needs o+x on every parent directory
CONF_MARKER = "# written by fabric_hpc.testing.SlurmTestCluster"
PORT_TRIES = 3  # starts with freshly drawn ports when a daemon finds its port taken
DEFAULT_PARTITION = "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP"

if TYPE_CHECKING:
    from fabric_hpc.topology import Fabric

_LIVE: weakref.WeakSet[SlurmTestCluster] = weakref.WeakSet()


class SlurmTestCluster(SlurmClient, _accounting.AccountingMixin, LogsMixin):
    """A live Slurm cluster of emulated nodes on this host (see the module docstring).

    ``prefix`` selects the Slurm under test: None runs the system's (Debian's ``slurm-wlm``), a
    directory (``/opt/slurm-25.11``) runs the install there: its ``bin`` and ``sbin`` come first on
    the ``PATH`` of the daemons, of every command this object runs and of the jobs (sbatch exports
    the caller's environment). ``version`` is what that ``slurmctld -V`` answers, as a tuple.

    ``nodes`` is a count (``n1..nN`` with ``cpus_per_node`` / ``gpus_per_node``) or node specs.
    ``topology_conf`` / ``gres_conf`` are file texts (``gres.conf`` is generated from the specs when
    omitted). ``settings`` override ``slurm.conf`` keys (``SchedulerParameters`` option by option);
    ``extra_conf`` is appended; ``partitions`` replace the default ``debug`` partition; ``config_files``
    are written next to ``slurm.conf`` (``job_submit.lua``, ``plugstack.conf``, prolog scripts: a text
    starting with ``#!`` is made executable). ``{base_dir}``, ``{etc_dir}``, ``{log_dir}``, ``{device_dir}``
    in all of these are replaced by the real paths.

    ``accounting=True`` adds Slurm accounting: a throw-away MariaDB and ``slurmdbd``, started before
    slurmctld and stopped with the cluster (:mod:`fabric_hpc.testing._accounting`); then
    :meth:`sacctmgr` adds accounts and ``sshare``/``sacct`` answer.
    """

    def __init__(
        self,
        nodes: Sequence[NodeSpec] | int = 4,
        *,
        cpus_per_node: int = 8,
        gpus_per_node: int = 8,
        base_dir: str | os.PathLike[str] | None = None,
        topology_conf: str | None = None,
        gres_conf: str | None = None,
        settings: Mapping[str, str] | None = None,
        extra_conf: str = "",
        partitions: Sequence[str] | None = None,
        config_files: Mapping[str, str] | None = None,
        cluster_name: str = "fabrictest",
        start_timeout: float = 30.0,
        keep_files: bool = False,
        prefix: str | os.PathLike[str] | None = None,
        accounting: bool = False,
    ) -> None:
        self.install = SlurmInstall(None if prefix is None else Path(prefix))
        if isinstance(nodes, int):
            nodes = [NodeSpec(f"n{i}", cpus=cpus_per_node, gpus=gpus_per_node) for i in range(1, nodes + 1)]
        self.nodes: tuple[NodeSpec, ...] = tuple(nodes)
        self.node_names: tuple[str, ...] = tuple(conf.split_node_names(self.nodes))
        self._owns_base_dir = base_dir is None
        self.base_dir = Path(tempfile.mkdtemp(prefix="fabric-slurm-") if base_dir is None else base_dir)
        self.base_dir = self.base_dir.resolve()
        self.etc_dir = self.base_dir / "etc"
        self.log_dir = self.base_dir / "log"
        self.device_dir = self.base_dir / "dev"
        self.work_dir = self.base_dir / "work"
        self.conf_path = self.etc_dir / "slurm.conf"
        # munged wants every directory above its socket world-executable, which a private
        # (0700) temporary directory is not: its socket, key and seed get a directory of their own.
        self.munge_dir: Path | None = None
        self.hostname = socket.gethostname().split(".")[0]
        self.topology_conf = topology_conf
        self.gres_conf = gres_conf
        self.settings = dict(settings or {})
        self.extra_conf = extra_conf
        self.partitions = tuple(partitions) if partitions is not None else (DEFAULT_PARTITION,)
        self.config_files = dict(config_files or {})
        self.cluster_name = cluster_name
        self.start_timeout = start_timeout
        self.keep_files = keep_files
        self.accounting: _accounting.Accounting | None = None
        self.ctld_port = 0
        self.node_ports: dict[str, int] = {}
        self._draw_ports(accounting=accounting)
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._env: dict[str, str] | None = None
        self.start_seconds: float | None = None  # how long the last start() took
        self.port_clashes: list[str] = []  # the bind failures start() recovered from (with new ports)

    def _draw_ports(self, *, accounting: bool) -> None:
        ports = conf.free_ports(len(self.nodes) + 3)
        self.accounting = _accounting.Accounting(self.install, db_port=ports[-2], dbd_port=ports[-1]) \
            if accounting else None
        self.ctld_port = ports[0]
        self.node_ports = dict(zip(self.node_names, ports[1:-2], strict=True))

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_fabric(cls, fabric: Fabric, *, topology_plugin: str = "tree", **kwargs: Any) -> SlurmTestCluster:
        """A cluster of every host of a fabric model: node lines, ``topology.conf`` and ``gres.conf``
        come from :mod:`fabric_hpc.topology.export`. Other keywords go to the constructor.
        (``topology_plugin="block"`` needs Slurm >= 23.11; Debian 12 ships 22.05.)
        """
        from fabric_hpc.topology import export

        if len(fabric.hosts) > MAX_FABRIC_HOSTS:
            raise ConfigError(f"fabric {fabric.name!r} has {len(fabric.hosts)} hosts; the test cluster "
                              f"runs one slurmd per host and takes at most {MAX_FABRIC_HOSTS}",
                              hint="use a small fabric, e.g. generators.leaf_spine(16)")
        nodes = [NodeSpec.from_fields(h, export.slurm_node_fields(fabric, h)) for h in fabric.hosts]
        settings = kwargs.get("settings") or {}
        kwargs["settings"] = {"TopologyPlugin": f"topology/{topology_plugin}", **settings}
        # 23.11 reads BlockLevels, not BlockSizes: the topology.conf follows the Slurm under test
        version = SlurmInstall(kwargs.get("prefix") and Path(kwargs["prefix"])).version() \
            if topology_plugin == "block" else None
        return cls(nodes, topology_conf=export.topology_conf(fabric, plugin=topology_plugin,
                                                             slurm_version=version),
                   gres_conf=export.gres_conf(fabric, device_dir="{device_dir}"), **kwargs)

    # ------------------------------------------------------------------ paths and environment
    @property
    def env(self) -> dict[str, str]:
        """Environment for Slurm client commands: this cluster's ``SLURM_CONF``, no inherited ``SLURM_*``,
        the Slurm under test first on ``PATH``."""
        if self._env is None:
            drop = ("SLURM_", "SBATCH_", "SRUN_", "SALLOC_", "SQUEUE_", "SINFO_")
            env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
            env["SLURM_CONF"] = str(self.conf_path)
            env["PATH"] = self.install.path(env.get("PATH", "/usr/bin:/bin"))
            self._env = env
        return dict(self._env)

    @property
    def version(self) -> tuple[int, int, int]:
        """The version of the Slurm under test (``slurmctld -V``), e.g. ``(25, 11, 7)``."""
        return self.install.version()

    @property
    def munge_socket(self) -> Path:
        if self.munge_dir is None:
            raise ConfigError("the munge socket exists once write_config() or start() has run")
        return self.munge_dir / "munge.socket.2"

    @property
    def running(self) -> bool:
        return bool(self._procs) and all(p.poll() is None for p in self._procs.values())

    # ------------------------------------------------------------------ configuration files
    def write_config(self) -> Path:
        """Write every configuration file and fake device under ``base_dir``; returns ``slurm.conf``."""
        for sub in ("etc", "log", "state", "run", "dev", "work", "spool", "tmp"):
            (self.base_dir / sub).mkdir(parents=True, exist_ok=True)
        if self.munge_dir is None:
            self.munge_dir = Path(tempfile.mkdtemp(prefix=MUNGE_PREFIX, dir=MUNGE_PARENT))
            self.munge_dir.chmod(0o755)
        for name in self.node_names:
            (self.base_dir / "spool" / name).mkdir(exist_ok=True)
            (self.base_dir / "tmp" / name).mkdir(exist_ok=True)
        gres = self._fill(self.gres_conf) if self.gres_conf is not None else conf.default_gres_conf(
            self.nodes, self.device_dir)
        self._make_devices(conf.gres_device_files(gres))
        (self.etc_dir / "gres.conf").write_text(gres)
        if self.topology_conf is not None:
            (self.etc_dir / "topology.conf").write_text(self._fill(self.topology_conf))
        files = {"plugstack.conf": ""} | self.config_files
        for name, text in files.items():
            path = self.etc_dir / name
            path.write_text(self._fill(text))
            path.chmod(0o755 if text.startswith("#!") else 0o644)
        if self.accounting is not None:
            dbd_conf = self.etc_dir / "slurmdbd.conf"
            dbd_conf.touch(mode=0o600)
            dbd_conf.write_text(self.accounting.slurmdbd_conf(
                munge_socket=self.munge_socket, log_dir=self.log_dir, run_dir=self.base_dir / "run"))
        self.conf_path.write_text(self._slurm_conf())
        return self.conf_path

    def _fill(self, text: str) -> str:
        return conf.substitute(text, {"base_dir": str(self.base_dir), "etc_dir": str(self.etc_dir),
                                      "log_dir": str(self.log_dir), "device_dir": str(self.device_dir)})

    def _slurm_conf(self) -> str:
        settings = conf.base_settings(
            cluster_name=self.cluster_name, hostname=self.hostname, ctld_port=self.ctld_port,
            munge_socket=self.munge_socket, base_dir=self.base_dir, etc_dir=self.etc_dir,
            log_dir=self.log_dir,
            topology=self.topology_conf is not None, version=self.version)
        if resolves_to_loopback(self.hostname):
            # bind every daemon to the host name's address (loopback) instead of 0.0.0.0
            settings["CommunicationParameters"] = "NoInAddrAny,NoCtldInAddrAny"
        if self.accounting is not None:
            settings.update(self.accounting.settings(self.munge_socket))
        settings = conf.merge_settings(settings, self.settings)
        lines = [conf.render_settings({k: self._fill(v) for k, v in settings.items()})]
        lines += [conf.node_line(s, hostname=self.hostname, port=self.node_ports[s.name]) + "\n"
                  for s in self.nodes]
        lines += [self._fill(p) + "\n" for p in self.partitions]
        if self.extra_conf:
            lines.append(self._fill(self.extra_conf).rstrip("\n") + "\n")
        # the runner's pid: another runner's reap_orphans() leaves this cluster alone while it lives
        return f"{CONF_MARKER} (runner pid {os.getpid()})\n" + "".join(lines)

    def _make_devices(self, paths: Iterable[Path]) -> None:
        for path in paths:
            if path.parent != self.device_dir:
                if path.exists():
                    continue
                raise ConfigError(f"gres.conf names {path}, which is neither in {self.device_dir} nor exists",
                                  hint="export gres.conf with device_dir=cluster.device_dir")
            if path.is_char_device():
                continue
            path.unlink(missing_ok=True)
            os.mknod(path, 0o666 | 0o020000, os.makedev(195, conf.device_minor(path)))

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> SlurmTestCluster:
        """Start munged, slurmctld and every slurmd; return once ``sinfo`` shows all nodes idle."""
        if self._procs:
            raise ConfigError("this test cluster is already started")
        try:
            check_prerequisites(self.install, accounting=self.accounting is not None)
        except ExternalError:
            if self._owns_base_dir and not self.keep_files:
                shutil.rmtree(self.base_dir, ignore_errors=True)
            raise
        began = time.monotonic()
        self.reap_orphans()
        for attempt in range(1, PORT_TRIES + 1):
            logs = log_sizes(self.log_dir)  # what earlier starts wrote is no clash of this one
            try:
                self._start_daemons()
                break
            except BaseException as exc:
                clash = port_clash(self.log_dir, logs) if isinstance(exc, ExternalError) else None
                if clash is None or attempt == PORT_TRIES:
                    self._fail_start(exc)
                self._retry_ports(clash, attempt)
        self.start_seconds = time.monotonic() - began
        return self

    def _start_daemons(self) -> None:
        self.write_config()
        _LIVE.add(self)
        self._start_munged()
        if self.accounting is not None:
            self._start_accounting()
        self._spawn("slurmctld", ["slurmctld", "-D", "-c"])
        self._wait_port(self.ctld_port, "slurmctld")
        for name in self.node_names:
            self._spawn(f"slurmd-{name}", ["slurmd", "-D", "-N", name])
        self._wait_nodes(lambda state: state == "idle", "idle")

    def _retry_ports(self, clash: str, attempt: int) -> None:
        """A port checked free was bound by another process before our daemon bound it: stop, set the
        logs aside and draw new ports (a failure here ends the start as any other)."""
        try:
            self._stop_daemons()
            self.port_clashes.append(clash)
            set_aside_logs(self.log_dir, attempt)
            self._draw_ports(accounting=self.accounting is not None)
        except BaseException as exc:
            self._fail_start(exc)

    def _fail_start(self, exc: BaseException) -> NoReturn:
        report = self.diagnostics() if isinstance(exc, ExternalError) else ""
        self.keep_files = self.keep_files or isinstance(exc, ExternalError)  # the logs, for the hint
        self.stop()
        if isinstance(exc, ExternalError):
            raise ExternalError(f"{exc.message}\n{report}", hint=exc.hint) from exc
        raise exc

    @staticmethod
    def reap_orphans() -> set[int]:
        """SIGKILL job steps left by test clusters whose runner died (daemons die with their runner).

        Only processes whose ``SLURM_CONF`` is a test-cluster file with no live slurmctld/munged
        and no live runner (the process that wrote it: pytest-xdist runs several side by side)
        are touched; munge directories of dead clusters (older than a minute) are removed.
        Called by :meth:`start`; returns the pids it killed.
        """
        found = orphans(CONF_MARKER)
        terminate([], found, first=signal.SIGKILL)
        for stale in Path(MUNGE_PARENT).glob(MUNGE_PREFIX + "*"):  # munged removes its pid file on exit
            if not (stale / "munged.pid").exists() and time.time() - stale.stat().st_mtime > 60:
                shutil.rmtree(stale, ignore_errors=True)
        return found

    def daemon_pids(self) -> dict[str, int]:
        """Pid of each daemon started by this object (``munged``, ``slurmctld``, ``slurmd-<node>``)."""
        return {name: proc.pid for name, proc in self._procs.items()}

    def pids(self) -> set[int]:
        """Every live process of this cluster: daemons, their children, slurmstepd and job processes.

        Found as our children, by ``SLURM_CONF`` in their environment, or by a working directory
        inside ``base_dir`` (Slurm 25.11's slurmstepd hides its environment), and their descendants.
        """
        own = {p.pid for p in self._procs.values() if p.poll() is None}
        own |= {child for pid in own for child in descendants(pid)}
        # job processes (SLURM_JOB_ID) and slurmstepd (our daemons' mark), never a shell that exported SLURM_CONF
        strays = processes_with_env("SLURM_CONF", str(self.conf_path), any_of=("SLURM_JOB_ID", DAEMON_MARK))
        strays |= processes_in_dir(self.base_dir)
        strays |= {child for pid in strays for child in descendants(pid)}
        return {pid for pid in own | strays if alive(pid)}

    def stop(self) -> None:
        """Stop every daemon by its pid (and slurmstepd / job processes of this cluster); reap them."""
        self._stop_daemons()
        if self._owns_base_dir and not self.keep_files:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def _stop_daemons(self) -> None:
        started = bool(self._procs)
        munged = self._procs.pop("munged", None)
        terminate(list(self._procs.values()), set())
        self._procs.clear()
        # slurmstepd (reparented to init) and the job processes under them are disposable; a step
        # may still be forking its tasks, so look again until nothing of this cluster is left.
        for _ in range(5 if started else 0):
            strays = self.pids() - ({munged.pid} if munged is not None else set())
            if not strays:
                break
            terminate([], strays, first=signal.SIGKILL)
        if munged is not None:
            terminate([munged], set())
        _LIVE.discard(self)
        if self.munge_dir is not None:
            shutil.rmtree(self.munge_dir, ignore_errors=True)
            self.munge_dir = None
        if self.accounting is not None:
            self.accounting.remove_files()

    def __enter__(self) -> SlurmTestCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def restart_slurmctld(self, *, clean: bool = False, timeout: float = 30.0) -> None:
        """Stop slurmctld (SIGTERM: it saves its state) and start it again.

        ``clean=False`` recovers jobs and node states from ``StateSaveLocation``. Returns once
        every node responds again.
        """
        proc = self._procs.pop("slurmctld", None)
        if proc is not None:
            terminate([proc], set())
        self._spawn("slurmctld", ["slurmctld", "-D"] + (["-c"] if clean else []))
        self._wait_port(self.ctld_port, "slurmctld", timeout)
        self._wait_nodes(lambda s: not s.endswith(("*", "~")) and s != "unknown", "responding", timeout,
                         only=[n for n in self.node_names if f"slurmd-{n}" in self._procs])

    def kill_slurmd(self, node: str, sig: int = signal.SIGKILL) -> None:
        """Kill one node's slurmd (a node failure for fault tests)."""
        proc = self._procs.pop(f"slurmd-{self._check_node(node)}")
        proc.send_signal(sig)
        proc.wait(timeout=30)

    def start_slurmd(self, node: str, *, timeout: float = 30.0) -> None:
        """Start one node's slurmd again (after :meth:`kill_slurmd`)."""
        name = f"slurmd-{self._check_node(node)}"
        if name in self._procs and self._procs[name].poll() is None:
            raise ConfigError(f"slurmd of {node} is already running")
        self._spawn(name, ["slurmd", "-D", "-N", node])
        self._wait_port(self.node_ports[node], name, timeout)
        self._wait_nodes(lambda s: not s.endswith(("*", "~")) and s != "unknown", "responding", timeout,
                         only=[node])

    def _check_node(self, node: str) -> str:
        if node not in self.node_ports:
            raise ConfigError(f"no node {node!r} in this cluster",
                              hint=f"nodes: {', '.join(self.node_names)}")
        return node

    def _start_munged(self) -> None:
        assert self.munge_dir is not None
        m = self.munge_dir
        key = m / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        self._spawn("munged", ["munged", "-F", f"--socket={self.munge_socket}", f"--key-file={key}",
                               f"--log-file={self.log_dir}/munged.log", f"--pid-file={m}/munged.pid",
                               f"--seed-file={m}/munged.seed"])
        deadline = time.monotonic() + 10
        while not self.munge_socket.is_socket():
            self._check_alive()
            if time.monotonic() > deadline:
                raise ExternalError("munged did not create its socket within 10 s")
            time.sleep(0.02)

    def _spawn(self, name: str, argv: list[str], *, user: str | None = None, cwd: Path | None = None) -> None:
        with open(self.log_dir / f"{name}.out", "ab") as out:
            self._procs[name] = subprocess.Popen(
                argv, env={**self.env, DAEMON_MARK: "1"}, cwd=cwd or self.base_dir, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent, user=user)

    def _check_alive(self) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                raise ExternalError(f"{name} exited with status {proc.returncode} while starting",
                                    hint=f"see {self.log_dir}")

    def _wait_port(self, port: int, what: str, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout or self.start_timeout)
        while True:
            self._check_alive()
            with socket.socket() as sock:
                # a port taken by another process answers too: only our daemon's listener counts
                if sock.connect_ex(("127.0.0.1", port)) == 0 and listens(self._procs[what].pid, port):
                    return
            if time.monotonic() > deadline:
                raise ExternalError(f"{what} is not listening on 127.0.0.1:{port}")
            time.sleep(0.05)

    def _wait_nodes(self, ok: Callable[[str], bool], what: str, timeout: float | None = None,
                    only: Sequence[str] | None = None) -> None:
        deadline = time.monotonic() + (timeout or self.start_timeout)
        names = set(self.node_names if only is None else only)
        states: dict[str, str] = {}
        while True:
            self._check_alive()
            states = {n: s for n, s in self.node_states(check=False).items() if n in names}
            if len(states) == len(names) and all(ok(s) for s in states.values()):
                return
            if time.monotonic() > deadline:
                raise ExternalError(f"nodes not {what} after {timeout or self.start_timeout:.0f} s: {states}")
            time.sleep(0.1)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<SlurmTestCluster {len(self.nodes)} nodes {state} in {self.base_dir}>"


# ---------------------------------------------------------------------- module helpers
def check_prerequisites(install: SlurmInstall | None = None, *, accounting: bool = False) -> None:
    """ExternalError naming what is missing: root, the Slurm and munge binaries (and accounting's)."""
    install = install or SlurmInstall(None)
    missing = [c for c in REQUIRED_COMMANDS if install.which(c) is None]
    if accounting and not missing and _accounting.missing(install):
        raise ExternalError(f"Slurm accounting: not installed ({install.label}): "
                            f"{', '.join(_accounting.missing(install))}", hint=_accounting.HINT)
    if missing:
        raise ExternalError(f"Slurm test cluster: not installed ({install.label}): {', '.join(missing)}",
                            hint=INSTALL_HINT if install.prefix is None
                            else "make slurm-25.11 (see docs/testing.md)")
    if os.geteuid() != 0:
        raise ExternalError("the Slurm test cluster must run as root (slurmd runs jobs as any user)",
                            hint="run the tests as root, e.g. in the CI container")


@atexit.register
def _stop_all() -> None:
    for cluster in list(_LIVE):
        cluster.stop()
