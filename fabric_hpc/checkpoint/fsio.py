"""Low-level durable file I/O: create-exclusive writes with crc32c computed on the way out,
fsync of files and directories, positional reads into caller buffers."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import re
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from google_crc32c import _crc32c  # C extension: accepts ndarrays, releases the GIL >= 1 MB

from fabric_hpc.atomic import fsync_dir  # noqa: F401  (re-exported: the checkpoint code's fsync of directories)
from fabric_hpc import atomic
from fabric_hpc.atomic import remove_stale_siblings, temp_sibling
from fabric_hpc.checkpoint.errors import CheckpointError, CheckpointIOError

BLOCK = 64 << 20  # bytes per read; 16 MiB per write() (then writeback is started on it)
WRITE_BLOCK = 16 << 20
FILE_MODE = 0o600
DIR_MODE = 0o700
_ZEROS = np.zeros(BLOCK, np.uint8)


T = TypeVar("T")
R = TypeVar("R")

def _load_sync_file_range() -> Any:
    """libc's sync_file_range (Linux), or None elsewhere."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_SYNC_FILE_RANGE = _load_sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd: int, offset: int, nbytes: int) -> None:
    """Ask the kernel to start writing this range to the device now (asynchronously), so the
    disk works while we are still copying the next blocks into the page cache; the final fsync
    then waits for less. A no-op where sync_file_range is unavailable."""
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, offset, nbytes, _SYNC_FILE_RANGE_WRITE)


def crc32c(data: np.ndarray, crc: int = 0, *, pad: int = 0) -> int:
    """crc32c of a C-contiguous array's bytes (then ``pad`` zero bytes, as :func:`write_file`
    writes them), continuing from ``crc``."""
    flat = data.reshape(-1).view(np.uint8)
    for lo in range(0, flat.size, BLOCK):
        crc = _crc32c.extend(crc, flat[lo:lo + BLOCK])
    while pad > 0:
        crc = _crc32c.extend(crc, _ZEROS[:min(pad, BLOCK)])
        pad -= BLOCK
    return crc


def write_file(path: Path, data: np.ndarray | bytes, *, pad: int = 0, fsync: bool = True) -> tuple[int, int]:
    """Write ``data`` (+ ``pad`` zero bytes) to a new file (0600, O_EXCL); return (nbytes, crc32c).

    The checksum is computed block by block just before each block is written, so the bytes are
    read from memory once while still in cache; writeback of each block starts right after it
    is written (see :func:`start_writeback`).
    """
    flat = np.frombuffer(data, np.uint8) if isinstance(data, bytes) else data.reshape(-1).view(np.uint8)
    return write_blocks(path, (flat[lo:lo + WRITE_BLOCK] for lo in range(0, flat.size, WRITE_BLOCK)),
                        pad=pad, fsync=fsync)


def write_blocks(path: Path, blocks: Iterable[np.ndarray], *, pad: int = 0,
                 fsync: bool = True) -> tuple[int, int]:
    """:func:`write_file` from C-contiguous blocks produced one after another (a tensor that is
    never whole in memory); return (nbytes, crc32c). An error from the producer propagates."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    except OSError as exc:
        raise _io_error("create", path, exc) from exc
    crc, offset = 0, 0
    try:
        for data in blocks:
            block = data.reshape(-1).view(np.uint8)
            crc = _crc32c.extend(crc, block)
            _write_all(fd, block)
            start_writeback(fd, offset, block.size)
            offset += block.size
        while pad:
            block = _ZEROS[:min(pad, BLOCK)]
            crc = _crc32c.extend(crc, block)
            _write_all(fd, block)
            start_writeback(fd, offset, block.size)
            offset += block.size
            pad -= block.size
        if fsync:
            os.fsync(fd)
    except OSError as exc:
        raise _io_error("write", path, exc) from exc
    finally:
        os.close(fd)
    return offset, crc


def _write_all(fd: int, block: np.ndarray) -> None:
    view = memoryview(block)
    while view.nbytes:
        n = os.write(fd, view)
        view = view[n:]


class UnsafeFileError(OSError):
    """A checkpoint file that is a symlink, FIFO, device or socket, or lies behind a symlinked
    directory: never read (see :func:`open_in`)."""


def open_in(step_dir: Path | str, rel: str) -> int:
    """A read-only fd of the regular file ``step_dir/rel``, opened relative to ``step_dir`` one
    component at a time with ``O_NOFOLLOW`` (a symlink anywhere below ``step_dir`` is refused,
    so nothing outside the step directory is read) and ``O_NONBLOCK`` (a FIFO never blocks).
    Raises FileNotFoundError for a missing file and :class:`UnsafeFileError` for anything else."""
    import stat as st_

    parts = rel.split("/")
    dfd = os.open(step_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_NONBLOCK if last else os.O_DIRECTORY)
            try:
                fd = os.open(part, flags, dir_fd=dfd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENXIO):
                    what = "/".join(parts[:i + 1])
                    raise UnsafeFileError(exc.errno, f"{what} is a symlink or not a "
                                          f"{'regular file' if last else 'directory'} (not followed)") from None
                raise
            if last:
                break
            os.close(dfd)
            dfd = fd
    finally:
        os.close(dfd)
    mode = os.fstat(fd).st_mode
    if not st_.S_ISREG(mode):
        os.close(fd)
        from fabric_hpc.inputs import kind_of

        raise UnsafeFileError(errno.EINVAL, f"{rel} is {kind_of(mode)}, not a regular file")
    return fd


def read_in(step_dir: Path | str, rel: str, limit: int) -> bytes:
    """The bytes of ``step_dir/rel`` through :func:`open_in`, at most ``limit`` bytes."""
    fd = open_in(step_dir, rel)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise UnsafeFileError(errno.EFBIG, f"{rel} has {size:,} bytes, more than the limit of {limit:,}")
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)


def read_into(fd: int, out: np.ndarray, offset: int) -> None:
    """Fill ``out`` (C-contiguous) from ``fd`` at ``offset``; a short file is an error."""
    view = memoryview(out.reshape(-1).view(np.uint8))
    pos = 0
    while pos < view.nbytes:
        n = os.preadv(fd, [view[pos:pos + BLOCK]], offset + pos)
        if n == 0:
            raise EOFError(f"file ends {view.nbytes - pos} bytes early")
        pos += n


def thread_map(fn: Callable[[T], R], items: list[T], threads: int) -> list[R]:
    """``[fn(x) for x in items]`` on a few threads; in this thread alone at the interpreter's exit, where
    no executor takes new work (a TieredStore's last drain runs then): ``fn`` must be safe to run again."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=max(1, threads))
    try:
        futures = [pool.submit(fn, x) for x in items]
    except RuntimeError:  # "cannot schedule new futures after interpreter shutdown" (not fn's errors)
        pool.shutdown(cancel_futures=True)
        return [fn(x) for x in items]
    with pool:
        return [f.result() for f in futures]


def fsync_paths(paths: list[Path], threads: int = 8) -> None:
    """fsync many files and directories concurrently (each fsync mostly waits on the device;
    issued together they share journal commits instead of paying one each in sequence)."""
    def one(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    thread_map(one, paths, threads)


def make_dir(path: Path, *, exist_ok: bool = False) -> None:
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        if not exist_ok:
            raise
    except OSError as exc:
        raise _io_error("create directory", path, exc) from exc


def path_max(path: Path) -> int:
    """The longest path (bytes, with its NUL) the filesystem of ``path`` accepts (4096 on Linux)."""
    try:
        return os.pathconf(path, "PC_PATH_MAX")
    except (OSError, ValueError):
        return 4096


def make_dirs(path: Path) -> None:
    """``mkdir -p`` where every created level gets mode 0700 (os.makedirs only sets the leaf)."""
    path = Path(path)
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for p in reversed(missing):
        make_dir(p, exist_ok=True)


def write_small(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """A small metadata file (fsync'd unless the caller batches it into fsync_paths)."""
    write_file(path, data, fsync=fsync)


def publish_dir(tmp: Path, out: Path) -> None:
    """Move the finished directory ``tmp`` to ``out`` (an empty ``out`` is replaced); the rename made durable."""
    if out.exists():
        out.rmdir()
    os.rename(tmp, out)
    fsync_dir(out.parent)


def export_tmp_dir(out: Path) -> Path:
    """The hidden staging directory an export builds ``out`` in (published by :func:`publish_dir`),
    after removing the ones killed exports to ``out`` on this host left behind."""
    remove_stale_siblings(out)
    return temp_sibling(out)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def described(path: Path | str) -> str:
    """``path``, or for a file of a save in progress (``ROOT/.tmp-step-N-.../model/w/c.0``) the
    checkpoint it is for: "checkpoint step N in ROOT (file model/w/c.0)"."""
    parts = Path(path).parts
    sibling = re.compile(rf"\.(?P<name>.+)\.{re.escape(atomic._HOST)}-\d+-[0-9a-f]{{8}}\.tmp")
    for i, part in enumerate(parts):
        rest = "/".join(parts[i + 1:])
        if found := re.match(r"\.tmp-step-(\d+)", part):
            where = f"checkpoint step {int(found.group(1))} in {Path(*parts[:i])}"
        elif found := sibling.fullmatch(part):  # an export's staging directory (temp_sibling)
            where = str(Path(*parts[:i], found.group("name")))
        else:
            continue
        return f"{where} (file {rest})" if rest else where
    return str(path)


def _io_error(what: str, path: Path, exc: OSError) -> CheckpointIOError | CheckpointError:
    where = described(path)
    if exc.errno in (errno.ENOTDIR, errno.EISDIR, errno.ENOENT, errno.ELOOP, errno.ENAMETOOLONG):
        return CheckpointError(f"cannot {what} {where}: {exc.strerror}",
                               hint="check the path: a part of it is missing or is a file")
    hint = {errno.ENOSPC: "free disk space or prune old checkpoints (`fabric ckpt prune`)",
            errno.EDQUOT: "free space within your quota or prune old checkpoints (`fabric ckpt prune`)",
            errno.EACCES: "check the directory's owner and permissions",
            errno.EPERM: "check the directory's owner and permissions",
            errno.EROFS: "that filesystem is mounted read-only: write to a directory on a writable one",
            errno.EEXIST: "another save uses the same temporary name; retry",
            errno.EFBIG: "the file is over this process's file size limit (`ulimit -f`, RLIMIT_FSIZE: raise "
                         "it, e.g. `ulimit -f unlimited` in the job script) or the largest file the "
                         "filesystem holds (save to another filesystem)"}.get(exc.errno or 0)
    return CheckpointIOError(f"cannot {what} {where}: {exc.strerror}",
                             hint=hint or "check the filesystem: free space, permissions, mount options")
