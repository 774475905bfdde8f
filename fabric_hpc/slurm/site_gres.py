"""The lines of a site's own ``gres.conf`` that ``fabric slurm install`` keeps when it writes its own.

fabric declares the GPUs of its model (``Name=gpu``, one line per GPU, ``AutoDetect=off``); the rest of
the site's file is kept verbatim after fabric's lines:

* lines for any other GRES (``Name=nvme File=...``, ``Name=mps``, ``Name=shard``, with their
  ``NodeName=``; a line continued with ``\\`` stays one line), the comment lines just above each, and
  ``Include`` lines (kept as they are; the files they name are read as slurmd reads them, below);
* an ``Name=mps``/``Name=shard`` line with ``File=`` on nodes of the model must name only files of
  fabric's GPU lines for each of those nodes (``<gres_device_dir>/nvidiaN``, N below the node's GPU
  count; compared as text, as Slurm's gres_c_s.c does): slurmd discards a shared record whose File
  matches no GPU (``Discarding gres/'shared' configuration (File=...) without matching gres/'sharing'
  record``) and slurmctld marks the node INVALID (``gres/mps count reported lower than configured``):
  a ConfigError naming the line;
* ``Include FILE``: a relative FILE is the slurm conf dir's (gres.conf's dir, as slurmd's
  ``get_extra_conf_path``), an absolute one read under the install root, never through a link that
  leaves it; the file must be a regular UTF-8 file of at most :data:`MAX_GRES_CONF` bytes, at most
  :data:`MAX_INCLUDE_DEPTH` deep, :data:`MAX_INCLUDE_FILES` in all, and not include itself (slurmd
  would recurse until it dies); a missing one is refused (slurmd stops at it). What it declares for
  nodes of the model must not be a ``Name=gpu`` line or a node-local ``AutoDetect`` other than
  ``off`` (install writes gres.conf only, so it cannot change them: a ConfigError naming the file and
  line); its global ``AutoDetect`` counts where the Include stands; its mps/shard lines are checked as
  above. A glob (``*``) or ``%c`` is not read: slurmd reads no glob in gres.conf (it stops, or with
  ``DebugFlags=GLOB_SILENCE`` skips it) and gres.conf has no ClusterName for ``%c``;
* ``Name=gpu`` lines for nodes the model does not have (a ``Name=gpu`` line naming nodes of the model
  and others is kept with its ``NodeName`` narrowed to the others; one without ``NodeName`` is
  replaced by fabric's, with a note that nodes outside the model need their own);
* the global ``AutoDetect=`` value: kept, and when it is not ``off`` each of fabric's lines carries a
  node-local ``AutoDetect=off`` (gres.conf(5): a node-local AutoDetect trumps the global one), so
  other nodes keep detecting their GPUs and fabric's ``Cores``/``Links`` are not sanity-checked
  against NVML (a mismatch drains the node);
* a node-local ``AutoDetect=`` other than ``off`` on a node of the model is dropped (the line too
  when nothing else is on it): slurmd stops at a second node-local AutoDetect that differs from the
  first (``duplicate node-local AutoDetect specification does not match the first``).

Other comments and blank lines are dropped (the whole file is in ``gres.conf.fabric-backup``).
The file is the site's: one that is not a regular file, over :data:`MAX_GRES_CONF` bytes, not
UTF-8, or with a ``NodeName`` that is not a host list is a ConfigError, not a traceback.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fabric_hpc.errors import ConfigError
from fabric_hpc.hostlist import compress

MAX_GRES_CONF = 1 << 20
MAX_INCLUDE_DEPTH = 8
MAX_INCLUDE_FILES = 64
SHARED_GRES = ("mps", "shard")
NOT_READ = "its files are not read: they must not declare fabric's GPUs"
#: Comments fabric writes into gres.conf: never kept as the site's (a rerun reads fabric's file back).
FABRIC_COMMENTS = ("# Written by `fabric slurm install`", "# gres.conf for fabric ", "# kept from the site's")
KEPT_HEADER = "# kept from the site's gres.conf by `fabric slurm install` (GRES other than fabric's GPUs):"


@dataclass(frozen=True)
class SiteGres:
    """What install keeps of the site's gres.conf (``path``, as shown)."""

    path: str
    kept: tuple[str, ...] = ()        # the lines kept, verbatim (their comment lines included)
    autodetect: str | None = None     # the global AutoDetect value, None when the file has none
    replaced_gpu: int = 0             # Name=gpu lines replaced by fabric's
    notes: tuple[str, ...] = ()       # what was changed in a kept line, and why
    included: Mapping[str, str] = field(default_factory=dict)  # Include name -> why it was not read

    def summary(self) -> list[str]:
        """Install's lines on what it kept (each starts ``kept`` or ``note``)."""
        lines = [ln for ln in self.kept if not ln.lstrip().startswith("#")]
        out = []
        gres = [ln for ln in lines if not ln.lower().startswith("include")]
        if gres:
            names = sorted({f.partition("=")[2] for ln in gres for f in ln.split()
                            if f.lower().startswith("name=")}, key=str.lower)
            out.append(f"kept    {len(gres)} line{'s' * (len(gres) != 1)} of the site's gres.conf "
                       f"({self.path}) for {', '.join(names) or 'node-local settings'}, after fabric's "
                       "GPU lines")
        out += [f"kept    {ln} ({self.included.get(_include_name(ln), NOT_READ)})"
                for ln in lines if ln.lower().startswith("include")]
        if self.autodetect is not None and self.autodetect.lower() != "off":
            out.append(f"kept    the site's AutoDetect={self.autodetect} (nodes outside the fabric model); "
                       "fabric's GPU lines carry AutoDetect=off")
        if self.replaced_gpu:
            out.append(f"note    replaced {self.replaced_gpu} site line{'s' * (self.replaced_gpu != 1)} "
                       f"for gpu in {self.path} with fabric's")
        return out + [f"note    {n}" for n in self.notes]


def read_site_gres(path: Path, shown: str, hosts: Collection[str], *,
                   gpu_files: Mapping[str, Collection[str]] | None = None,
                   root: Path | None = None) -> SiteGres | None:
    """:func:`parse_site_gres` of the file at ``path`` (``shown``: its path on the cluster); None when
    there is none. Opened without blocking (a FIFO), read only when a regular file under the limit.
    Its ``Include`` files are read under ``root`` (the install root; ``path`` is ``root``/``shown``)."""
    try:  # never through a symlink: install replaces the file and would copy what it points to
        text = _read_text(path, shown, nofollow=True)
    except FileNotFoundError:
        return None
    includes = _Includes(str(Path(shown).parent), root if root is not None else Path("/"), [shown])
    return parse_site_gres(text, shown, hosts, gpu_files=gpu_files, includes=includes)


def _read_text(path: Path, shown: str, *, nofollow: bool = False) -> str:
    """The text of the regular file ``path`` (ConfigError naming ``shown`` when it cannot be read;
    FileNotFoundError when there is none); ``nofollow``: a symbolic link there is not read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (os.O_NOFOLLOW if nofollow else 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        why = "a symbolic link (install reads and replaces only a regular file there)" \
            if nofollow and exc.errno == errno.ELOOP else exc.strerror or str(exc)
        raise _unreadable(shown, why) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _unreadable(shown, "not a regular file")
        if st.st_size > MAX_GRES_CONF:
            raise _unreadable(shown, f"{st.st_size:,} bytes, over the {MAX_GRES_CONF:,} install reads")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(MAX_GRES_CONF + 1)
    except OSError as exc:
        raise _unreadable(shown, exc.strerror or str(exc)) from None
    finally:
        os.close(fd)
    if len(data) > MAX_GRES_CONF:
        raise _unreadable(shown, f"over the {MAX_GRES_CONF:,} bytes install reads")
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        raise _unreadable(shown, f"not UTF-8 text (byte {exc.start})") from None


def _unreadable(shown: str, why: str) -> ConfigError:
    return ConfigError(f"cannot read the site's gres.conf {shown}: {why}; install keeps its lines for GRES "
                       "other than gpu and must read it first (nothing was written)",
                       hint=f"fix or move {shown} (fabric writes its GPU lines there), then run install "
                            "again")


@dataclass
class _Includes:
    """Where slurmd finds the files a gres.conf Includes, and those being read (loops, depth, count)."""

    conf_dir: str             # the cluster's slurm conf dir: relative names are its (get_extra_conf_path)
    root: Path                # the install root the cluster's paths lie under
    stack: list[str]          # the files being read, outermost first (cluster paths)
    count: int = 0

    def open(self, name: str, where: str) -> tuple[str, str]:
        """(cluster path, text) of ``Include name`` at ``where`` (file and line)."""
        fix = f"fix the Include at {where} (slurmd would not read it either), then run install again"
        if not name.isprintable():  # a NUL is no path at all (os.open raises ValueError)
            raise ConfigError(f"the site's gres.conf: Include at {where} names {name!r}, a name with "
                              "control characters", hint=fix)
        shown = os.path.normpath(name if name.startswith("/") else f"{self.conf_dir}/{name}")
        if shown in self.stack:
            raise ConfigError(f"the site's gres.conf: Include at {where} reads {shown} again ("
                              f"{' -> '.join([*self.stack, shown])}): slurmd would recurse until it dies",
                              hint=fix)
        if len(self.stack) > MAX_INCLUDE_DEPTH or self.count >= MAX_INCLUDE_FILES:
            raise ConfigError(f"the site's gres.conf: Include at {where} ({shown}) goes past the "
                              f"{MAX_INCLUDE_DEPTH} levels and {MAX_INCLUDE_FILES} files install reads",
                              hint="flatten the site's gres.conf Includes, then run install again")
        local = self.root / shown.lstrip("/")
        real, top = os.path.realpath(local), os.path.realpath(self.root)
        if os.path.commonpath([real, top]) != top:
            raise ConfigError(f"the site's gres.conf: Include at {where} ({shown}) leads outside the install "
                              f"root {self.root} (to {real})", hint=fix)
        self.count += 1
        try:  # the resolved path, checked above: a link swapped in since leads nowhere else
            return shown, _read_text(Path(real), shown, nofollow=True)
        except FileNotFoundError:
            raise ConfigError(f"the site's gres.conf: Include at {where} names {shown}, which does not "
                              "exist: slurmd stops at it (`Include` failed)", hint=fix) from None


@dataclass
class _Parsed:
    hosts: set[str]
    gpu_files: Mapping[str, Collection[str]] | None
    includes: _Includes | None
    kept: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    included: dict[str, str] = field(default_factory=dict)
    autodetect: str | None = None
    replaced: int = 0


def parse_site_gres(text: str, shown: str, hosts: Collection[str], *,
                    gpu_files: Mapping[str, Collection[str]] | None = None,
                    includes: _Includes | None = None) -> SiteGres:
    """What install keeps of gres.conf ``text`` when it declares the GPUs of ``hosts`` (module doc).
    ``gpu_files``: each host's GPU ``File=`` values in fabric's lines (mps/shard ``File=`` are checked
    against them); ``includes``: where Include files are read (None: they are not)."""
    st = _Parsed(set(hosts), gpu_files, includes)
    comments: list[str] = []
    for number, raw in _logical_lines(text):
        line = raw.replace("\\\n", " ").split("#", 1)[0].strip()
        if not line:
            if raw.lstrip().startswith("#") and not raw.lstrip().startswith(FABRIC_COMMENTS):
                comments.append(raw)
            elif not raw.strip():
                comments = []
            continue
        fields = [(k.lower(), v) for k, _, v in (f.partition("=") for f in line.split())]
        keys = dict(fields)
        if fields[0][0] == "autodetect":  # the global one (later wins, as in Slurm)
            st.autodetect, comments = fields[0][1], []
            continue
        if fields[0][0] == "include" and not fields[0][1]:
            _include(st, line, f"{shown} line {number}")
        named = _nodes(keys["nodename"], shown, number) if "nodename" in keys else None
        ours = named is None or bool(st.hosts.intersection(named))
        _check_shared(st, keys, named, f"{shown} line {number}")
        if keys.get("name", "").lower() == "gpu" and ours:
            st.replaced, comments = st.replaced + 1, []
            others = [n for n in named or () if n not in st.hosts]
            if others:  # the line's other nodes keep it, narrowed to them
                raw = _narrowed(raw, others)
                st.notes.append(f"kept {shown} line {number} for {compress(others)} only "
                                f"(NodeName={keys['nodename']}): fabric declares the GPUs of the model's "
                                "nodes")
                st.kept.append(raw)
            elif named is None:
                st.notes.append(f"replaced {shown} line {number} (Name=gpu without NodeName, for every "
                                "node): nodes outside the fabric model need their own Name=gpu lines")
            continue
        local = keys.get("autodetect")
        if "nodename" in keys and local is not None and local.lower() != "off" and ours:
            raw = re.sub(r"[ \t]+AutoDetect=\S+", "", raw, count=1, flags=re.I)
            st.notes.append(f"dropped AutoDetect={local} from {shown} line {number} (NodeName="
                            f"{keys['nodename']}): fabric declares these nodes' GPUs with AutoDetect=off, "
                            "and slurmd stops at two node-local AutoDetect values")
            if "name" not in keys:
                comments = []
                continue
        st.kept += [*comments, raw]
        comments = []
    return SiteGres(shown, tuple(st.kept), st.autodetect, st.replaced, tuple(st.notes), st.included)


def _include_name(line: str) -> str:
    """The file an ``Include`` line names (its first word after ``Include``, as slurmd reads it)."""
    words = line.split("#", 1)[0].split()
    return words[1] if len(words) > 1 else ""


def _include(st: _Parsed, line: str, where: str) -> None:
    """Read the file ``line`` (an Include at ``where``) names, and what it declares for the model."""
    name = _include_name(line)
    if st.includes is None or not name:
        return
    if "*" in name or "%" in name:
        st.included[name] = ("not read: slurmd expands no glob or %c in gres.conf (it stops at it, or skips "
                             "it with DebugFlags=GLOB_SILENCE); it must not declare fabric's GPUs")
        return
    path, text = st.includes.open(name, where)
    st.includes.stack.append(path)
    try:
        _scan_included(st, text, path)
    finally:
        st.includes.stack.pop()
    st.included.setdefault(name, f"read {path}: no GPU lines for the model's nodes")


def _scan_included(st: _Parsed, text: str, shown: str) -> None:
    """What an Included file declares: its global AutoDetect (in place), its Includes; a Name=gpu line
    or a node-local AutoDetect for the model's nodes is a ConfigError (install cannot rewrite it)."""
    for number, raw in _logical_lines(text):
        line = raw.replace("\\\n", " ").split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{shown} line {number}"
        fields = [(k.lower(), v) for k, _, v in (f.partition("=") for f in line.split())]
        keys = dict(fields)
        if fields[0][0] == "autodetect":
            st.autodetect = fields[0][1]
            continue
        if fields[0][0] == "include" and not fields[0][1]:
            _include(st, line, where)
            continue
        named = _nodes(keys["nodename"], shown, number) if "nodename" in keys else None
        if named is not None and not st.hosts.intersection(named):
            continue
        _check_shared(st, keys, named, where)
        local = keys.get("autodetect")
        what = ("a Name=gpu line" if keys.get("name", "").lower() == "gpu" else
                f"AutoDetect={local}" if "nodename" in keys and local and local.lower() != "off" else None)
        if what:
            nodes = compress(sorted(st.hosts.intersection(named))) if named else "every node"
            raise ConfigError(f"the site's gres.conf Includes {shown}, and its line {number} has {what} for "
                              f"{nodes} of the fabric model: slurmd would read it with fabric's GPU lines "
                              "(install writes gres.conf only, not the files it Includes)",
                              hint=f"remove that line from {shown} (or give it NodeName= of nodes outside "
                                   "the model), then run install again")


def _check_shared(st: _Parsed, keys: dict[str, str], named: list[str] | None, where: str) -> None:
    """ConfigError when an mps/shard line with ``File=`` names files of no fabric GPU on a model node."""
    given = keys.get("file") or keys.get("files")  # gres.c reads both keys
    if st.gpu_files is None or keys.get("name", "").lower() not in SHARED_GRES or not given:
        return
    from fabric_hpc.hostlist import expand

    try:
        files = expand(given)
    except ConfigError as exc:
        raise ConfigError(f"the site's gres.conf {where}: File={given}: {exc.message}",
                          hint="fix that line (slurmd would not read it either), then run install "
                               "again") from None
    bad: dict[tuple[str, ...], list[str]] = {}
    for host in sorted(st.hosts.intersection(named) if named is not None else st.hosts):
        have = st.gpu_files.get(host, ())
        if missing := tuple(f for f in files if f not in have):
            bad.setdefault(missing, []).append(host)
    if not bad:
        return
    missing, nodes = next(iter(bad.items()))
    gpus = compress(list(st.gpu_files.get(nodes[0], ()))) or "none"
    raise ConfigError(f"the site's gres.conf {where}: Name={keys['name']} File={given} names "
                      f"{compress(list(missing))}, not a GPU file of fabric's lines for {compress(nodes)} "
                      f"(its GPU files: {gpus}): slurmd discards such a record (\"Discarding gres/'shared' "
                      "configuration (File=...) without matching gres/'sharing' record\")",
                      hint=f"give that line File= of the node's GPU files ({gpus}), or leave File= out "
                           "(Slurm then spreads Count over the GPUs), then run install again")


def gpu_files(fabric, device_dir: str) -> dict[str, frozenset[str]]:
    """Each host's GPU ``File=`` values in fabric's gres.conf (``export.gres_conf``)."""
    out = {}
    for host in fabric.hosts:
        n = fabric.spec.host_types[fabric.host_type_of[host]].gpus
        out[host] = frozenset(str(Path(device_dir) / f"nvidia{i}") for i in range(n))
    return out


def _narrowed(raw: str, nodes: list[str]) -> str:
    """``raw`` with its ``NodeName=`` set to ``nodes`` (a host list)."""
    return re.sub(r"(?i)\bNodeName=\S+", lambda _: f"NodeName={compress(nodes)}", raw, count=1)


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) of each line, one continued with a trailing ``\\`` joined with the
    next (kept with its newline, as written)."""
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if pending is not None:
            pending = (pending[0], pending[1] + "\n" + line)
        else:
            pending = (number, line)
        if not line.rstrip().endswith("\\") or line.lstrip().startswith("#"):
            out.append(pending)
            pending = None
    if pending is not None:
        out.append(pending)
    return out


def _nodes(expr: str, shown: str, number: int) -> list[str]:
    from fabric_hpc.hostlist import expand

    try:
        return expand(expr)
    except ConfigError as exc:
        raise ConfigError(f"the site's gres.conf {shown} line {number}: NodeName={expr}: {exc.message}",
                          hint=f"fix that line of {shown} (slurmd would not read it either), then run "
                               "install again") from None
