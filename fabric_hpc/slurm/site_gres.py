"""The lines of a site's own ``gres.conf`` that ``fabric slurm install`` keeps when it writes its own.

fabric declares the GPUs of its model (``Name=gpu``, one line per GPU, ``AutoDetect=off``); the rest of
the site's file is kept verbatim after fabric's lines:

* lines for any other GRES (``Name=nvme File=...``, ``Name=mps``, ``Name=shard``, with their
  ``NodeName=``; a line continued with ``\\`` stays one line), the comment lines just above each, and
  ``Include`` lines (what they declare is not read: they must not declare fabric's GPUs);
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

import os
import re
import stat
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from fabric_hpc.errors import ConfigError
from fabric_hpc.hostlist import compress

MAX_GRES_CONF = 1 << 20
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
        out += [f"kept    {ln} (its files are not read: they must not declare fabric's GPUs)"
                for ln in lines if ln.lower().startswith("include")]
        if self.autodetect is not None and self.autodetect.lower() != "off":
            out.append(f"kept    the site's AutoDetect={self.autodetect} (nodes outside the fabric model); "
                       "fabric's GPU lines carry AutoDetect=off")
        if self.replaced_gpu:
            out.append(f"note    replaced {self.replaced_gpu} site line{'s' * (self.replaced_gpu != 1)} "
                       f"for gpu in {self.path} with fabric's")
        return out + [f"note    {n}" for n in self.notes]


def read_site_gres(path: Path, shown: str, hosts: Collection[str]) -> SiteGres | None:
    """:func:`parse_site_gres` of the file at ``path`` (``shown``: its path on the cluster); None when
    there is none. Opened without blocking (a FIFO), read only when a regular file under the limit."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _unreadable(shown, exc.strerror or str(exc)) from None
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
        text = data.decode()
    except UnicodeDecodeError as exc:
        raise _unreadable(shown, f"not UTF-8 text (byte {exc.start})") from None
    return parse_site_gres(text, shown, hosts)


def _unreadable(shown: str, why: str) -> ConfigError:
    return ConfigError(f"cannot read the site's gres.conf {shown}: {why}; install keeps its lines for GRES "
                       "other than gpu and must read it first (nothing was written)",
                       hint=f"fix or move {shown} (fabric writes its GPU lines there), then run install "
                            "again")


def parse_site_gres(text: str, shown: str, hosts: Collection[str]) -> SiteGres:
    """What install keeps of gres.conf ``text`` when it declares the GPUs of ``hosts`` (module doc)."""
    hosts = set(hosts)
    kept: list[str] = []
    notes: list[str] = []
    comments: list[str] = []
    autodetect, replaced = None, 0
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
            autodetect, comments = fields[0][1], []
            continue
        named = _nodes(keys["nodename"], shown, number) if "nodename" in keys else None
        ours = named is None or bool(hosts.intersection(named))
        if keys.get("name", "").lower() == "gpu" and ours:
            replaced, comments = replaced + 1, []
            others = [n for n in named or () if n not in hosts]
            if others:  # the line's other nodes keep it, narrowed to them
                raw = _narrowed(raw, others)
                notes.append(f"kept {shown} line {number} for {compress(others)} only "
                             f"(NodeName={keys['nodename']}): fabric declares the GPUs of the model's nodes")
                kept.append(raw)
            elif named is None:
                notes.append(f"replaced {shown} line {number} (Name=gpu without NodeName, for every node): "
                             "nodes outside the fabric model need their own Name=gpu lines")
            continue
        local = keys.get("autodetect")
        if "nodename" in keys and local is not None and local.lower() != "off" and ours:
            raw = re.sub(r"[ \t]+AutoDetect=\S+", "", raw, count=1, flags=re.I)
            notes.append(f"dropped AutoDetect={local} from {shown} line {number} (NodeName={keys['nodename']}"
                         "): fabric declares these nodes' GPUs with AutoDetect=off, and slurmd stops at two "
                         "node-local AutoDetect values")
            if "name" not in keys:
                comments = []
                continue
        kept += [*comments, raw]
        comments = []
    return SiteGres(shown, tuple(kept), autodetect, replaced, tuple(notes))


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
