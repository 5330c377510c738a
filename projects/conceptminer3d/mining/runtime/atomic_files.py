"""Files that are either complete or absent: write beside the target, then rename into place.

Every output of a mining dir (tables, cache shards, manifests, subset pickles, the report) goes
through these writers, so a crash or a full disk never leaves a file that a later run or a
training job could read as finished. A writer's scratch file is named ``<target>.tmp-<pid>``;
``remove_partial_outputs`` deletes what a killed writer left.

A full disk is the user's to fix, not a bug: a failed write becomes a ``DiskFullError`` that
names the file, the space it needed and the space there was, and the scratch file is removed.
Memory-mapped outputs reserve their whole size before the first write (``create_npy_memmap``):
a write into a mapped page that the file system cannot back kills the process with SIGBUS
instead of raising.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import pickle
import shutil
import socket
from typing import Iterator, Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    'DiskFullError',
    'Publication',
    'atomic_output',
    'create_npy_memmap',
    'pid_alive',
    'publishing_directory',
    'remove_partial_outputs',
    'write_json_atomic',
    'write_npy_atomic',
    'write_pickle_atomic',
    'write_table_atomic',
    'write_text_atomic',
]

_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """A write failed for want of space (or quota) on the file system that holds ``path``."""

    user_error = True  # conceptminer3d.cli: one line, status 2

    def __init__(self, path: str, needed_bytes: int, free_bytes: int, at_least: bool = False):
        self.path, self.needed_bytes, self.free_bytes = path, int(needed_bytes), int(free_bytes)
        needed = f'{"more than " if at_least else "about "}{_size(needed_bytes)}'
        super().__init__(
            errno.ENOSPC,
            f'no space left on the device writing {path}: it needed {needed}, {_size(free_bytes)} was free. '
            'Free some space (or point the work dir elsewhere) and run the same command again: finished '
            'outputs and cache batches are kept, nothing half-written is.',
        )

    def __str__(self) -> str:
        return self.strerror


def _size(n: int) -> str:
    for unit, scale in (('GB', 2**30), ('MB', 2**20), ('KB', 2**10)):
        if n >= scale:
            return f'{n / scale:.1f} {unit}'
    return f'{n} bytes'


def _free_bytes(path: str) -> int:
    try:
        return shutil.disk_usage(os.path.dirname(os.path.abspath(path)) or '.').free
    except OSError:
        return 0


def _is_disk_full(err: OSError, path: str, needed_bytes: int) -> bool:
    # numpy reports a short write without an errno ("N requested and M written").
    return err.errno in _DISK_FULL_ERRNOS or (err.errno is None and _free_bytes(path) < needed_bytes)


@contextlib.contextmanager
def atomic_output(path: str, suffix: str = '', needed_bytes: Optional[int] = None) -> Iterator[str]:
    """A scratch path beside ``path`` (``<path>.tmp-<pid><suffix>``: a suffix for writers that
    insist on one, e.g. ``.npy``, ``.jpg``) to write in the block, then renamed to ``path``. On
    failure the scratch file is removed, and a full disk becomes a ``DiskFullError``.
    ``needed_bytes`` None: a streamed write of unknown size, reported as more than what was
    written when the disk filled."""
    scratch = f'{path}.tmp-{os.getpid()}{suffix}'
    try:
        yield scratch
        os.replace(scratch, path)
    except BaseException as err:
        written = os.path.getsize(scratch) if os.path.exists(scratch) else 0
        with contextlib.suppress(OSError):
            os.remove(scratch)
        needed = written if needed_bytes is None else needed_bytes
        if isinstance(err, OSError) and not isinstance(err, DiskFullError) and _is_disk_full(err, path, needed):
            raise DiskFullError(path, needed, _free_bytes(path), at_least=needed_bytes is None) from err
        raise


def write_table_atomic(table: pa.Table, path: str) -> None:
    with atomic_output(path, needed_bytes=table.nbytes) as scratch:
        pq.write_table(table, scratch)


def write_npy_atomic(array: np.ndarray, path: str) -> None:
    with atomic_output(path, '.npy', np.asarray(array).nbytes) as scratch:
        np.save(scratch, array)


def write_text_atomic(text: str, path: str) -> None:
    data = text.encode()
    with atomic_output(path, needed_bytes=len(data)) as scratch, open(scratch, 'wb') as f:
        f.write(data)


def write_json_atomic(obj, path: str) -> None:
    write_text_atomic(json.dumps(obj, indent=2, sort_keys=False, default=str), path)


def write_pickle_atomic(obj, path: str, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
    # streamed: a subset's GT database can be large
    with atomic_output(path) as scratch, open(scratch, 'wb') as f:
        pickle.dump(obj, f, protocol=protocol)


def create_npy_memmap(path: str, shape: Sequence[int], dtype) -> np.memmap:
    """A new ``.npy`` at ``path`` mapped for writing, its whole size reserved on disk first,
    so that a full disk is a ``DiskFullError`` here rather than a SIGBUS mid-write."""
    try:  # open_memmap writes the file's last byte: a full disk can stop it already
        array = np.lib.format.open_memmap(path, mode='w+', dtype=dtype, shape=tuple(shape))
    except OSError as err:
        with contextlib.suppress(OSError):
            os.remove(path)
        needed = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if _is_disk_full(err, path, needed):
            raise DiskFullError(path, needed, _free_bytes(path)) from err
        raise
    size = os.path.getsize(path)
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as err:
        if err.errno in (errno.EOPNOTSUPP, errno.EINVAL) and not _is_disk_full(err, path, size):
            return array  # a file system without fallocate: nothing to reserve with
        del array
        os.remove(path)
        if _is_disk_full(err, path, size):
            raise DiskFullError(path, size, _free_bytes(path)) from err
        raise
    finally:
        os.close(fd)
    return array


def remove_partial_outputs(work_dir: str) -> None:
    """Delete what a killed writer left in ``work_dir`` (the ``*.tmp-<pid>`` files of the
    writers above); outputs that were complete are never touched. Only the dir's one writer
    (``writer_lock``) may call it: another live writer's scratch files look the same."""
    if os.path.isdir(work_dir):
        for name in os.listdir(work_dir):
            if '.tmp-' in name:
                os.remove(os.path.join(work_dir, name))


@dataclasses.dataclass
class Publication:
    """A directory being written: fill ``path``; after the block ``published`` says whether it
    became the final directory (False: another process published the same one first)."""

    path: str
    published: bool = False


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def publishing_directory(final: str) -> Iterator[Publication]:
    """A directory that appears complete or not at all: the block fills a per-process sibling
    (``<final>.partial-<host>-<pid>``: the same file system, so the rename is atomic, and two
    processes building the same thing never write into each other's files), renamed to
    ``final`` after it.
    If ``final`` exists by then (another process got there first), theirs is kept and ours
    removed; a caller that means to replace an existing ``final`` removes it in the block. On an
    error the sibling is removed; those of killed processes of this host are removed on the next
    start."""
    final = os.path.abspath(final)
    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    prefix = f'{os.path.basename(final)}.partial-{socket.gethostname()}-'  # a PID means nothing elsewhere
    for name in os.listdir(parent):
        pid = name[len(prefix) :]
        if name.startswith(prefix) and pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
    publication = Publication(os.path.join(parent, f'{prefix}{os.getpid()}'))
    shutil.rmtree(publication.path, ignore_errors=True)
    os.makedirs(publication.path)
    try:
        yield publication
        try:
            os.rename(publication.path, final)
            publication.published = True
        except OSError:
            if not os.path.isdir(final):
                raise
    finally:
        shutil.rmtree(publication.path, ignore_errors=True)
