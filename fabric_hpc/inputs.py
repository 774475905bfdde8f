"""The input boundary: every file a user hands to fabric-hpc is read through here.

One function per kind of input, each with its limits checked *before* the expensive step:

* :func:`check_path` — the path exists and is the kind expected (a regular file, a directory);
  a FIFO, socket or device is refused before anything opens it (opening a FIFO blocks).
* :func:`read_bytes` / :func:`read_text` — a regular file of at most ``limit`` bytes (default
  :data:`MAX_FILE_BYTES`), opened non-blocking; text must be UTF-8 (the error names the offset).
* :func:`load_json` — JSON nested at most :data:`MAX_DEPTH` levels deep.
* :func:`load_yaml` — YAML through PyYAML's SafeLoader with **no anchors or aliases** (an alias
  bomb is refused at the first ``*``), duplicate keys refused, at most :data:`MAX_DEPTH` levels.
* :func:`finite` — a number that is finite and inside a range.
* :func:`os_error` — an ``OSError`` on a user path as a :class:`~fabric_hpc.errors.FabricError`
  (exit 3 for a wrong or missing path, 5 for the disk or permissions).

Limits are documented in ``docs/topology.md`` and the README's error section.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import shlex
import stat
from collections import Counter
from pathlib import Path
from typing import Any

from fabric_hpc.errors import ConfigError, ExternalError, FabricError, NotFoundError

#: Largest configuration, state or trace file read whole (bytes).
MAX_FILE_BYTES = 256 << 20
#: Deepest nesting of lists/mappings accepted in JSON and YAML documents.
MAX_DEPTH = 64

_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFDIR: "a directory", stat.S_IFLNK: "a symlink",
          stat.S_IFREG: "a regular file"}


def kind_of(mode: int) -> str:
    """``"a FIFO"``, ``"a directory"``, ... for a ``st_mode``."""
    return _KINDS.get(stat.S_IFMT(mode), "a special file")


def os_error(exc: OSError, what: str = "path", path: Any = None) -> FabricError:
    """The FabricError for an OSError on a user path: 3 when the path is wrong, 5 otherwise."""
    name = path if path is not None else exc.filename
    where = f"{what} {os.fspath(name)!r}" if name is not None else what
    # one line: a library's OSError (h5py) can carry a multi-line dump with its own details
    text = (exc.strerror or str(exc)).strip()
    reason = text.splitlines()[0][:300] if text else os.strerror(exc.errno or 0)
    if isinstance(exc, FileNotFoundError):
        return NotFoundError(f"{where}: does not exist", hint="check the path")
    if isinstance(exc, IsADirectoryError):
        return ConfigError(f"{where}: is a directory, a file was expected", hint="give a file path")
    if isinstance(exc, NotADirectoryError):
        return ConfigError(f"{where}: a part of the path is a file, a directory was expected",
                           hint="give a directory path")
    if isinstance(exc, FileExistsError):
        return ConfigError(f"{where}: already exists", hint="choose a new path or remove the old one")
    if exc.errno in (errno.ELOOP, errno.ENAMETOOLONG, errno.EINVAL):
        return ConfigError(f"{where}: {reason}", hint="give a plain path")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        target = f"file {os.fspath(name)!r}" if name is not None else "a file (the system did not say which)"
        return ExternalError(f"cannot write {target}: the disk is full ({os.strerror(exc.errno)})",
                             hint="free space on that filesystem (or quota), then run the command again")
    hint = {errno.EROFS: "that filesystem is mounted read-only: give a path on a writable one",
            errno.EACCES: "check the owner and permissions of the path and its directory",
            errno.EPERM: "check the owner and permissions of the path and its directory",
            errno.ENOENT: "give a path on a filesystem that holds files (not /proc or /sys)"}
    return ExternalError(f"{where}: {reason}",
                         hint=hint.get(exc.errno or 0, "check permissions and free space on that filesystem"))


def check_path(path: str | os.PathLike[str], *, kind: str = "file", what: str = "file") -> Path:
    """``path`` as a Path after checking it exists and is a regular file (``kind="file"``) or a
    directory (``kind="dir"``); symlinks are followed (the user named them)."""
    p = Path(path)
    try:
        st = os.stat(p)
    except OSError as exc:
        raise os_error(exc, what, p) from None
    want = stat.S_ISREG if kind == "file" else stat.S_ISDIR
    if not want(st.st_mode):
        raise ConfigError(f"{what} {str(p)!r} is {kind_of(st.st_mode)}, not "
                          f"{'a regular file' if kind == 'file' else 'a directory'}",
                          hint=f"give the path of a {'file' if kind == 'file' else 'directory'}")
    return p


def output_path(path: str | os.PathLike[str], *, what: str = "output file") -> Path:
    """A file path to write: its directory must exist (nothing is created on a typo), and the
    path itself must be absent or a regular file (never a directory, FIFO or device)."""
    text = os.fspath(path)
    if not text:
        raise ConfigError(f"{what} is an empty name", hint="give a file name")
    if text == "-":  # not stdout: the writers make files (atomically), so '-' would be a file named -
        raise ConfigError(f"{what} '-': this output is a file, not standard output",
                          hint="give a file name (./- if a file named '-' is really wanted)")
    p = Path(text)
    if _standard_stream(p):  # a rename there would replace the link itself (as root: /dev/stdout)
        raise ConfigError(f"{what} {text!r}: this output is a file, not a standard stream",
                          hint="give a file name in a directory of your own (then `cat` it if it "
                               "should go to the log)")
    if text.endswith("/") or p.is_dir():
        raise ConfigError(f"{what} {text!r} is a directory, a file name was expected",
                          hint=f"give a file name, e.g. {os.path.join(text, 'out')}")
    parent = p.parent
    if not parent.is_dir():
        above = next((a for a in (parent, *parent.parents) if os.path.lexists(a)), None)
        if above is not None and not above.is_dir():  # a file (or a dangling link) where a directory is needed
            raise ConfigError(f"{what} {text!r}: {str(above)!r} is not a directory",
                              hint="give a path whose directories exist")
        raise NotFoundError(f"{what} {text!r}: the directory {str(parent)!r} does not exist",
                            hint=f"create it first (mkdir -p {shlex.quote(str(parent))})")
    try:
        st = os.stat(p)
    except FileNotFoundError:
        return p
    except OSError as exc:
        raise os_error(exc, what, p) from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{what} {text!r} is {kind_of(st.st_mode)}, not a regular file",
                          hint="give the path of a regular file")
    return p


_STREAMS = ("stdout", "stderr", "stdin")


def _standard_stream(path: Path) -> bool:
    """Whether ``path`` (or a link it goes through) is /dev/stdout, /dev/stderr, /dev/stdin or a
    file descriptor link (/dev/fd/N, /proc/self/fd/N): writers make files by renaming, which would
    replace such a link rather than write to the stream."""
    q = _resolved_parent(os.path.join(os.getcwd(), os.fspath(path)))
    for _ in range(40):  # the kernel's own limit on links followed
        parent = str(q.parent)
        if re.fullmatch(r"/proc/[^/]+(/task/[^/]+)?/fd", parent) or (parent == "/dev" and q.name in _STREAMS):
            return True
        if not q.is_symlink():
            return False
        q = _resolved_parent(os.path.join(parent, os.readlink(q)))
    return False


def _resolved_parent(path: str) -> Path:
    """``path`` with its directory resolved as the kernel does (links first, then ``..``: ``abspath`` would
    drop ``link/..`` as text) and its last part kept as it is."""
    head, name = os.path.split(path)
    if name in ("", ".", ".."):  # a directory, never a stream's name
        return Path(os.path.realpath(path))
    return Path(os.path.realpath(head)) / name


def distinct_outputs(outputs: dict[str, Any], inputs: dict[str, Any] | None = None) -> None:
    """ConfigError when two outputs name the same file, or an output is one of the inputs (it
    would be overwritten before, or instead of, being read). Keys are the option names shown;
    None values are skipped; an input that is not an existing file (a generator reference) is too."""
    def ident(path: Any) -> tuple[int, int] | str:
        try:
            st = os.stat(path)
            return (st.st_dev, st.st_ino)
        except OSError:
            return os.path.realpath(path)

    seen: dict[tuple[int, int] | str, str] = {}
    for name, path in (inputs or {}).items():
        if path is not None and os.path.isfile(path):
            shown = "" if name == os.fspath(path) else f" {os.fspath(path)!r}"  # a name that is the path, once
            seen[ident(path)] = f"the input {name}{shown}"
    for name, path in outputs.items():
        if path is None:
            continue
        key = ident(path)
        if key in seen:
            raise ConfigError(f"{name} {os.fspath(path)!r} is {seen[key]}: it would be overwritten",
                              hint=f"give {name} another file name")
        seen[key] = f"also {name.split()[0]}'s output"
    return None


# what a compressed file starts with: each name and how to undo it
_MAGIC = ((b"\x1f\x8b", "gzip", "gunzip"), (b"\x28\xb5\x2f\xfd", "zstd", "unzstd"),
          (b"BZh", "bzip2", "bunzip2"), (b"\xfd7zXZ\x00", "xz", "unxz"), (b"PK\x03\x04", "zip", "unzip"))


def compression_of(head: bytes) -> tuple[str, str] | None:
    """``(format, command to undo it)`` when ``head`` (a file's first bytes) starts like a
    compressed file: gzip, zstd, bzip2, xz or zip; None otherwise."""
    return next(((name, cmd) for magic, name, cmd in _MAGIC if head.startswith(magic)), None)


_SUFFIX = {"gunzip": ".gz", "unzstd": ".zst", "bunzip2": ".bz2", "unxz": ".xz", "unzip": ".zip"}


def to_stdout(cmd: str) -> str:
    """``cmd`` (from :func:`compression_of`) writing what it decompresses to stdout."""
    return "unzip -p" if cmd == "unzip" else f"{cmd} -c"


def decompress_command(path: str | os.PathLike[str], cmd: str) -> str:
    """A shell command that decompresses the file at ``path`` whatever its name: ``gunzip -k F``
    refuses a name without ``.gz`` ("unknown suffix -- ignored"), and unzip has no ``-k``. A name
    with the format's suffix gives the name without it; any other is replaced in place (through
    ``F.tmp``, a name a spool does not read)."""
    import shlex

    p = os.fspath(path)
    if p.startswith("-"):  # not an option to the command: ./-x.jsonl.gz
        p = f"./{p}"
    suffix = _SUFFIX.get(cmd, "")
    if suffix and p.endswith(suffix) and not os.path.basename(p) == suffix:
        return f"{to_stdout(cmd)} {shlex.quote(p)} > {shlex.quote(p[:-len(suffix)])}"
    tmp = shlex.quote(p + ".tmp")
    return f"{to_stdout(cmd)} {shlex.quote(p)} > {tmp} && mv {tmp} {shlex.quote(p)}"


def check_regular(fd: int, what: str, path: str | os.PathLike[str], limit: int = MAX_FILE_BYTES) -> None:
    """ConfigError unless the open ``fd`` is a regular file of at most ``limit`` bytes."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{what} {os.fspath(path)!r} is {kind_of(st.st_mode)}, not a regular file",
                          hint="give the path of a file")
    if st.st_size > limit:
        raise ConfigError(f"{what} {os.fspath(path)!r} has {st.st_size:,} bytes, more than the "
                          f"limit of {limit:,}", hint="split it, or check that it is the right file")


def read_bytes(path: str | os.PathLike[str], *, what: str = "file", limit: int = MAX_FILE_BYTES,
               follow: bool = True, dir_fd: int | None = None) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes. Opened with ``O_NONBLOCK`` (a
    FIFO never blocks) and, with ``follow=False``, ``O_NOFOLLOW`` (a symlink is refused)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow:
            raise ConfigError(f"{what} {os.fspath(path)!r} is a symlink",
                              hint="replace it by the file itself") from None
        raise os_error(exc, what, path) from None
    try:
        check_regular(fd, what, path, limit)
        chunks, total = [], 0
        while True:
            block = os.read(fd, 1 << 20)
            if not block:
                break
            total += len(block)
            if total > limit:
                raise ConfigError(f"{what} {os.fspath(path)!r} grew past the limit of {limit:,} bytes")
            chunks.append(block)
        return b"".join(chunks)
    except OSError as exc:
        raise os_error(exc, what, path) from None
    finally:
        os.close(fd)


def decode(raw: bytes, source: str) -> str:
    """UTF-8 text, or a ConfigError naming the byte offset of the first undecodable byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{source}:{line}: not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start})",
                          hint="save the file as UTF-8") from None


def read_text(path: str | os.PathLike[str], *, what: str = "file", limit: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of a regular file (see :func:`read_bytes` and :func:`decode`)."""
    return decode(read_bytes(path, what=what, limit=limit), os.fspath(path))


def depth_of(doc: Any, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of lists/dicts (iterative; stops counting past ``limit``)."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, d)
        if deepest > limit:
            return deepest
        stack.extend((c, d + 1) for c in children)
    return deepest


def _too_deep(source: str, limit: int) -> ConfigError:
    return ConfigError(f"{source}: nested more than {limit} levels deep",
                       hint="flatten the document; fabric-hpc documents need only a few levels")


def key_given_twice(pairs: list[tuple[str, Any]]) -> str:
    """The first key that appears more than once among one JSON object's ``pairs`` (an
    ``object_pairs_hook`` calls this once ``dict(pairs)`` came out shorter than ``pairs``)."""
    return next(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)


def load_json(text: str | bytes, source: str, *, max_depth: int = MAX_DEPTH, nonfinite: bool = False) -> Any:
    """Parse JSON; a ConfigError names the line for bad syntax, too-deep nesting or NaN/Infinity
    (``nonfinite``: NaN, Infinity and -Infinity, as Python's json.dump writes them, are floats)."""
    if isinstance(text, bytes):
        text = decode(text, source)

    def no_constant(name: str) -> Any:
        if nonfinite:
            return float(name)
        raise ConfigError(f"{source}: {name} is not a valid JSON number", hint="write a finite number")

    def one_of_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) != len(pairs):  # json.loads keeps the last silently: a second entry would hide the first
            raise ConfigError(f"{source}: key {key_given_twice(pairs)[:80]!r} appears twice in one object",
                              hint="keep one entry per key (JSON keeps only the last)")
        return obj

    try:
        doc = json.loads(text, parse_constant=no_constant, object_pairs_hook=one_of_each)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}:{exc.lineno}: not valid JSON: {exc.msg}",
                          hint="check the file's syntax (e.g. python -m json.tool FILE)") from None
    except ConfigError:
        raise
    except ValueError:  # a number of more than 4,300 digits (Python's int conversion limit)
        raise ConfigError(f"{source}: not valid JSON: a number has more than 4,300 digits",
                          hint="write numbers of ordinary size") from None
    except RecursionError:
        raise _too_deep(source, max_depth) from None
    if depth_of(doc, max_depth) > max_depth:
        raise _too_deep(source, max_depth)
    return doc


def read_json(path: str | os.PathLike[str], *, what: str = "JSON file", limit: int = MAX_FILE_BYTES,
              max_depth: int = MAX_DEPTH, nonfinite: bool = False) -> Any:
    return load_json(read_bytes(path, what=what, limit=limit), os.fspath(path), max_depth=max_depth,
                     nonfinite=nonfinite)


def load_yaml(text: str, source: str, *, max_depth: int = MAX_DEPTH) -> tuple[Any, Any]:
    """Parse YAML safely: ``(data, root node)`` (the node maps keys to lines). Anchors and aliases
    are refused (no alias bombs), duplicate keys are refused, nesting is at most ``max_depth``."""
    import yaml

    loader = None
    try:
        loader = _yaml_loader()(text)
        loader.source, loader.max_depth, loader.depth = source, max_depth, 0
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc.message}", hint=exc.hint) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}",
                          hint="check indentation and quoting") from None
    except RecursionError:
        raise _too_deep(source, max_depth) from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, node


_LOADER: Any = None


def _yaml_loader() -> Any:
    """SafeLoader without anchors/aliases, with a depth limit and unique keys (built lazily)."""
    global _LOADER
    if _LOADER is not None:
        return _LOADER
    import yaml

    class Loader(yaml.SafeLoader):
        source, max_depth, depth = "", MAX_DEPTH, 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()
            line = event.start_mark.line + 1
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise ConfigError(f"line {line}: YAML anchors and aliases (&name, *name) are not accepted",
                                  hint="write the values out in full")
            self.depth += 1
            if self.depth > self.max_depth:
                raise ConfigError(f"line {line}: nested more than {self.max_depth} levels deep",
                                  hint="flatten the document")
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                try:
                    first = seen.get(key)
                except TypeError:
                    raise ConfigError(f"line {key_node.start_mark.line + 1}: a mapping key must be a "
                                      f"plain value") from None
                if first is not None:
                    raise ConfigError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r} "
                                      f"(first at line {first})", hint="each key may appear once")
                seen[key] = key_node.start_mark.line + 1
            return super().construct_mapping(node, deep=deep)

        def construct_yaml_int(self, node: Any) -> Any:
            try:
                return super().construct_yaml_int(node)
            except ValueError:  # more than 4,300 digits: Python's int conversion limit
                raise ConfigError(f"line {node.start_mark.line + 1}: the integer {node.value[:20]}... has "
                                  f"more than 4,300 digits", hint="write numbers of ordinary size") from None

    Loader.add_constructor("tag:yaml.org,2002:int", Loader.construct_yaml_int)
    _LOADER = Loader
    return Loader


def finite(value: Any, name: str, *, lo: float | None = None, hi: float | None = None,
           lo_open: bool = False, source: str = "") -> float:
    """``value`` as a float that is finite and in [lo, hi] (``lo_open``: strictly above lo)."""
    where = f"{source}: " if source else ""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}{name}={value!r} is not a number") from None
    bad = not math.isfinite(x) or (lo is not None and (x <= lo if lo_open else x < lo)) or \
        (hi is not None and x > hi)
    if bad:
        rng = f"{'>' if lo_open else '≥'} {lo:g}" if lo is not None else ""
        if hi is not None:
            rng = f"{rng} and ≤ {hi:g}" if rng else f"≤ {hi:g}"
        raise ConfigError(f"{where}{name}={value!r} must be a finite number{' ' + rng if rng else ''}",
                          hint=f"give {name} a finite value{' ' + rng if rng else ''}")
    return x


__all__ = ["MAX_DEPTH", "MAX_FILE_BYTES", "check_path", "decode", "depth_of", "finite", "kind_of", "load_json",
           "load_yaml", "os_error", "output_path", "read_bytes", "read_json", "read_text"]
