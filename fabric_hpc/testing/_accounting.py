"""Slurm accounting for the live test cluster: ``slurmdbd`` backed by a throw-away MariaDB.

``SlurmTestCluster(..., accounting=True)`` asks :class:`Accounting` for its files and daemons:

- a MariaDB server of its own: ``mariadb-install-db`` initialises a data directory in
  ``/tmp/fabric-mariadb-*`` (owned by the ``mysql`` user: the server runs unprivileged, and pytest's
  private temporary directories are not reachable for it), ``mariadbd --no-defaults`` listens on
  127.0.0.1 at a free port and on a socket in that directory; the ``slurm`` database user gets a
  random password;
- ``slurmdbd -D`` with a ``slurmdbd.conf`` (mode 0600) next to ``slurm.conf``, on 127.0.0.1 at a free port;
- ``slurm.conf`` keys: ``AccountingStorageType=accounting_storage/slurmdbd``, ``gres/gpu`` as an
  accounted TRES, ``priority/multifactor`` (so ``sshare`` has usage) with a one-minute calc period.

Both daemons are children of the runner (stopped by pid, told by the kernel to exit with it); the
data directory is removed on stop. Nothing is matched by name.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from typing import Any

from fabric_hpc.errors import ConfigError, ExternalError
from fabric_hpc.testing._installs import SlurmInstall
from fabric_hpc.testing._processes import terminate

DB_PARENT, DB_PREFIX = "/tmp", "fabric-mariadb-"
DB_NAME, DB_USER, DB_OS_USER = "slurm_acct_db", "slurm", "mysql"
MARIADB_COMMANDS = ("mariadbd", "mariadb-install-db", "mariadb")
SLURM_COMMANDS = ("slurmdbd", "sacctmgr", "sshare")
PLUGIN = "accounting_storage_mysql.so"
SYSTEM_PLUGIN_DIRS = (Path("/usr/lib/x86_64-linux-gnu/slurm-wlm"), Path("/usr/lib/slurm"), Path("/usr/lib64/slurm"))
HINT = ("apt-get install slurmdbd mariadb-server (make sysdeps-test); the 25.11 tier's mysql plugin: "
        "make slurm-25.11 (.ci/slurm-matrix mysql-plugin)")


def plugin_path(install: SlurmInstall) -> Path | None:
    """Where this Slurm's ``accounting_storage/mysql`` plugin is (slurmdbd needs it), None when absent."""
    dirs = SYSTEM_PLUGIN_DIRS if install.prefix is None else (install.prefix / "lib" / "slurm",)
    return next((d / PLUGIN for d in dirs if (d / PLUGIN).exists()), None)


def missing(install: SlurmInstall) -> list[str]:
    """What accounting needs and this machine lacks (commands, the mysql plugin, the mysql user)."""
    out = [c for c in MARIADB_COMMANDS if shutil.which(c) is None]
    out += [c for c in SLURM_COMMANDS if install.which(c) is None]
    if plugin_path(install) is None:
        out.append(f"{PLUGIN} ({install.label})")
    try:
        pwd.getpwnam(DB_OS_USER)
    except KeyError:
        out.append(f"the {DB_OS_USER} user")
    return out


class Accounting:
    """MariaDB + slurmdbd of one test cluster (ports chosen by the cluster)."""

    def __init__(self, install: SlurmInstall, *, db_port: int, dbd_port: int) -> None:
        self.install = install
        self.db_port, self.dbd_port = db_port, dbd_port
        self.password = secrets.token_hex(16)
        self.db_dir: Path | None = None

    @property
    def socket(self) -> Path:
        assert self.db_dir is not None
        return self.db_dir / "mariadb.sock"

    def settings(self, munge_socket: Path) -> dict[str, str]:
        """``slurm.conf`` keys of a cluster with accounting."""
        return {
            "AccountingStoragePass": str(munge_socket),  # for slurmdbd: the munge socket (not AuthInfo's)
            "AccountingStorageType": "accounting_storage/slurmdbd",
            "AccountingStorageHost": "127.0.0.1",
            "AccountingStoragePort": str(self.dbd_port),
            "AccountingStorageTRES": "gres/gpu",
            "AccountingStorageEnforce": "associations,limits",  # limits: a job is charged when it ends (else only
            # running jobs are, once per PriorityCalcPeriod)
            "PriorityType": "priority/multifactor",
            "PriorityCalcPeriod": "1",  # minutes (Slurm's smallest): running jobs' usage is charged this often
            "PriorityWeightFairshare": "10000",
        }

    def slurmdbd_conf(self, *, munge_socket: Path, log_dir: Path, run_dir: Path) -> str:
        keys = {
            "AuthType": "auth/munge", "AuthInfo": f"socket={munge_socket}",
            "DbdHost": "localhost", "DbdAddr": "127.0.0.1", "DbdPort": str(self.dbd_port),
            "SlurmUser": "root", "LogFile": f"{log_dir}/slurmdbd.log", "PidFile": f"{run_dir}/slurmdbd.pid",
            "DebugLevel": "info",
            "StorageType": "accounting_storage/mysql", "StorageHost": "127.0.0.1",
            "StoragePort": str(self.db_port), "StorageUser": DB_USER, "StoragePass": self.password,
            "StorageLoc": DB_NAME,
        }
        if self.install.prefix is not None:
            keys["PluginDir"] = str(self.install.prefix / "lib" / "slurm")
        return "".join(f"{k}={v}\n" for k, v in keys.items())

    def init_db(self, log_dir: Path) -> None:
        """A fresh data directory for the server (``mariadb-install-db``, a few seconds)."""
        if self.db_dir is None:
            self.db_dir = Path(tempfile.mkdtemp(prefix=DB_PREFIX, dir=DB_PARENT))
            self.db_dir.chmod(0o755)
            shutil.chown(self.db_dir, DB_OS_USER, DB_OS_USER)
        argv = ["mariadb-install-db", "--no-defaults", f"--datadir={self.db_dir / 'data'}",
                f"--user={DB_OS_USER}", "--skip-test-db", "--auth-root-authentication-method=socket"]
        with open(log_dir / "mariadb-install-db.out", "ab") as out:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=120, check=False)
        if done.returncode != 0:
            raise ExternalError(f"mariadb-install-db exited with status {done.returncode}",
                                hint=f"see {log_dir}/mariadb-install-db.out")

    def mariadbd_argv(self, log_dir: Path) -> list[str]:
        assert self.db_dir is not None
        return ["mariadbd", "--no-defaults", f"--datadir={self.db_dir / 'data'}", f"--socket={self.socket}",
                "--bind-address=127.0.0.1", f"--port={self.db_port}", f"--pid-file={self.db_dir}/mariadbd.pid",
                "--skip-log-bin", "--innodb-buffer-pool-size=16M",
                "--innodb-log-file-size=8M", "--max-connections=40", "--performance-schema=OFF"]

    def wait_server(self, alive: Callable[[], None], timeout: float) -> None:
        """Wait until the server answers on its socket, then create the ``slurm`` user and database."""
        deadline = time.monotonic() + timeout
        while not self.socket.is_socket():
            alive()
            if time.monotonic() > deadline:
                raise ExternalError(f"mariadbd did not create {self.socket} within {timeout:.0f} s")
            time.sleep(0.05)
        sql = (f"CREATE DATABASE IF NOT EXISTS {DB_NAME}; "
               f"CREATE USER '{DB_USER}'@'127.0.0.1' IDENTIFIED BY '{self.password}'; "
               f"GRANT ALL ON {DB_NAME}.* TO '{DB_USER}'@'127.0.0.1';")
        done = subprocess.run(["mariadb", "--no-defaults", f"--socket={self.socket}", "-u", "root", "-e", sql],
                              capture_output=True, text=True, timeout=30, check=False)
        if done.returncode != 0:
            raise ExternalError(f"creating the slurm database user failed: {done.stderr.strip()[-300:]}")

    def remove_files(self) -> None:
        if self.db_dir is not None:
            shutil.rmtree(self.db_dir, ignore_errors=True)
            self.db_dir = None


def reap_stale_dirs() -> None:
    """Remove data directories of dead test servers (no pid file: mariadbd removes it on exit; or an hour old)."""
    for stale in Path(DB_PARENT).glob(DB_PREFIX + "*"):
        pid = stale / "mariadbd.pid"
        try:
            age = time.time() - stale.stat().st_mtime
            running = pid.exists() and os.path.exists(f"/proc/{pid.read_text().strip()}")
        except OSError:
            continue
        if age > 60 and not running:
            shutil.rmtree(stale, ignore_errors=True)


class AccountingMixin:
    """The accounting part of :class:`~fabric_hpc.testing.SlurmTestCluster` (its daemons and ``sacctmgr``)."""

    accounting: Accounting | None
    cluster_name: str
    log_dir: Path
    start_timeout: float
    _procs: dict[str, subprocess.Popen[bytes]]
    # provided by the cluster
    _spawn: Any
    _wait_port: Any
    _check_alive: Any
    run: Any

    def _start_accounting(self) -> None:
        """MariaDB, then slurmdbd, then this cluster in its database (before slurmctld starts)."""
        acct = self.accounting
        assert acct is not None
        reap_stale_dirs()
        acct.init_db(self.log_dir)
        self._spawn("mariadbd", acct.mariadbd_argv(self.log_dir), user=DB_OS_USER, cwd=acct.db_dir)
        acct.wait_server(self._check_alive, self.start_timeout)
        self.start_slurmdbd()
        self.sacctmgr("add", "cluster", self.cluster_name)

    def start_slurmdbd(self, timeout: float | None = None) -> None:
        """Start slurmdbd (at :meth:`start`, or again after :meth:`stop_slurmdbd`)."""
        if self.accounting is None:
            raise ConfigError("this test cluster has no accounting", hint="SlurmTestCluster(..., accounting=True)")
        self._spawn("slurmdbd", ["slurmdbd", "-D"])
        self._wait_port(self.accounting.dbd_port, "slurmdbd", timeout)

    def stop_slurmdbd(self) -> None:
        """Stop slurmdbd (SIGTERM, by its pid): slurmctld goes on and queues what it would send."""
        proc = self._procs.pop("slurmdbd", None)
        if proc is not None:
            terminate([proc], set())

    def sacctmgr(self, *args: str) -> str:
        """``sacctmgr -i ARGS`` (no confirmation); its stdout."""
        return self.run(["sacctmgr", "-i", *args], timeout=60).stdout

    def add_accounts(self, accounts: Sequence[str], user: str = "root", timeout: float = 30.0) -> None:
        """Add accounts and ``user`` to each; return once slurmctld knows every association (``sshare``)."""
        self.sacctmgr("add", "account", ",".join(accounts), "Description=test", "Organization=test")
        self.sacctmgr("add", "user", user, f"Account={','.join(accounts)}")
        deadline = time.monotonic() + timeout
        while True:
            out = self.run(["sshare", "-a", "-P", "-n", "-o", "Account,User"]).stdout
            seen = {tuple(x.strip() for x in line.split("|")) for line in out.splitlines()}
            if all((a, user) in seen for a in accounts):
                return
            if time.monotonic() > deadline:
                raise ExternalError(f"slurmctld does not show the associations of {user} in {accounts} after "
                                    f"{timeout:g} s")
            time.sleep(0.2)
