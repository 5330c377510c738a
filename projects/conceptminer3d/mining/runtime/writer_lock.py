"""One writer per mining dir: a kernel file lock that a second process waits for or stops at.

Two jobs mining into one work dir would remove each other's cache batches and scratch files
(the second merges and deletes batches the first is about to read). Every command that writes
into a mining dir (mining, subsets, the report, search outputs, FiftyOne tag import) holds
``<work_dir>/.writer.lock`` while it writes. The lock is ``flock(2)`` on an open file: the
kernel drops it when the holder exits, however it exits, so a SIGKILLed or OOM-killed run never
blocks the next one. The file itself stays (removing it would let two processes lock two
different files); while held it says who holds it (host, PID, since when, the command).

A second writer either stops at once with one line naming the holder (``if_busy='refuse'``,
what the tools do unless given ``--wait``) or waits for it, reporting the wait, up to a
timeout (``'wait'``, the training hook's default, which then reuses the finished outputs).
Within one process the lock is re-entrant: an entry point that holds it can call others that
take it too. The ranks of a torchrun job are one writer: rank 0 holds the lock
(``apis.run_mining`` makes the other ranks wait for it on the file system).

File systems: on a local disk and on NFSv4 (or NFSv3 with a working lockd) ``flock`` is seen
by every host. On NFS mounted ``nolock`` and on Lustre mounted ``localflock`` it holds only
between processes of one host; on Lustre mounted without ``flock``/``localflock`` it fails
with ENOSYS, and the writer goes on without the guarantee, saying so. See docs/mining.md, "One writer
per mining dir".
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import logging
import os
import socket
import sys
import time
from datetime import datetime, timezone
from typing import Callable, Dict, Iterator, Optional

from .atomic_files import pid_alive

__all__ = [
    'IF_BUSY_CHOICES',
    'LOCK_FILE',
    'WAIT_TIMEOUT_S',
    'MiningDirBusyError',
    'WriterLock',
    'add_writer_arguments',
    'current_writer',
    'describe_writer',
    'if_busy_of',
    'tool_writer_lock',
    'writer_lock',
]

logger = logging.getLogger('conceptminer3d.mining')

LOCK_FILE = '.writer.lock'
IF_BUSY_CHOICES = ('refuse', 'wait')
WAIT_TIMEOUT_S = 24 * 3600.0  # a real nuScenes mining run on one node takes hours
_UNSUPPORTED = (errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK)


class MiningDirBusyError(RuntimeError):
    """Another live process writes into the mining dir (or did not finish within the wait)."""

    user_error = True  # conceptminer3d.cli: one line, status 2


@dataclasses.dataclass
class WriterLock:
    """A held lock: whether this process had to wait for another writer first (then the
    outputs it wanted may already be there)."""

    work_dir: str
    waited: bool = False
    waited_s: float = 0.0


# work dir (real path) -> [open lock file, depth, WriterLock]: the locks this process holds.
_HELD: Dict[str, list] = {}


def _lock_path(work_dir: str) -> str:
    return os.path.join(work_dir, LOCK_FILE)


def current_writer(work_dir: str) -> Optional[dict]:
    """Who holds ``work_dir``'s lock (host, pid, since, command), or None when no one seems
    to. Read from the holder's record without taking the lock (trying it could make a writer
    starting at that instant see a busy dir): a message's probe, not a guarantee."""
    try:
        with open(_lock_path(work_dir)) as f:
            holder = _holder_of(f)
    except OSError:
        return None
    if not holder:
        return None
    if holder.get('host') == socket.gethostname() and not pid_alive(int(holder.get('pid', 0))):
        return None  # a SIGKILLed holder leaves its record
    return holder


def _holder_of(f) -> dict:
    f.seek(0)
    try:
        return json.loads(f.read() or '{}')
    except ValueError:  # the holder is between truncating and writing its record
        return {}


def describe_writer(work_dir: str, holder: Optional[dict]) -> str:
    if not holder:
        return f'{work_dir} is being written by another process'
    return (
        f'{work_dir} is being written by PID {holder.get("pid")} on {holder.get("host")} since '
        f'{holder.get("since")} ({holder.get("command")})'
    )


def _record() -> str:
    command = ' '.join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:300]
    since = datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')
    return json.dumps(dict(host=socket.gethostname(), pid=os.getpid(), since=since, command=command))


@contextlib.contextmanager
def writer_lock(
    work_dir: str,
    if_busy: str = 'refuse',
    timeout_s: Optional[float] = None,
    report: Optional[Callable[[str], None]] = None,
    report_every_s: float = 60.0,
    poll_s: float = 1.0,
) -> Iterator[WriterLock]:
    """Hold ``work_dir``'s writer lock for the block.

    Args:
        work_dir (str): the mining dir. One that does not exist is not locked: there is
            nothing to protect, and the command reports it missing (a mining run creates it
            before it locks).
        if_busy (str): another process holds it: ``'refuse'`` raises ``MiningDirBusyError`` at
            once, naming it; ``'wait'`` waits until it is released.
        timeout_s (float, optional): the longest wait; default ``WAIT_TIMEOUT_S``.
        report (callable, optional): takes the wait's messages (who is awaited, then every
            ``report_every_s``); default the ``conceptminer3d.mining`` logger.
        report_every_s (float): how often a wait says it is still waiting.
        poll_s (float): how often a wait tries the lock.

    Yields:
        WriterLock: ``waited`` says whether another writer was awaited.
    """
    if if_busy not in IF_BUSY_CHOICES:
        raise ValueError(f'if_busy must be one of {IF_BUSY_CHOICES}, got {if_busy!r}')
    if not os.path.isdir(work_dir):  # nothing there to protect: the command says what is missing
        yield WriterLock(work_dir)
        return
    key = os.path.realpath(work_dir)
    if key in _HELD:  # re-entrant: an entry point calling another
        _HELD[key][1] += 1
        try:
            yield _HELD[key][2]
        finally:
            _HELD[key][1] -= 1
        return
    f = open(_lock_path(work_dir), 'a+')
    try:
        held = _acquire(f, work_dir, if_busy, WAIT_TIMEOUT_S if timeout_s is None else timeout_s,
                        report or logger.warning, report_every_s, poll_s)  # fmt: skip
    except BaseException:
        f.close()
        raise
    if held is None:  # no locks on this file system: go on, as before there were locks
        f.close()
        yield WriterLock(work_dir)
        return
    _HELD[key] = [f, 1, held]
    try:
        f.seek(0)
        f.truncate()
        f.write(_record())
        f.flush()
        yield held
    finally:
        del _HELD[key]
        with contextlib.suppress(OSError):
            f.truncate(0)
            f.flush()
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


def _acquire(f, work_dir, if_busy, timeout_s, report, report_every_s, poll_s) -> Optional[WriterLock]:
    start = time.monotonic()
    last_report = None
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            waited_s = time.monotonic() - start
            if last_report is not None:
                report(f'{work_dir}: the other writer finished after {waited_s:.0f} s; going on')
            return WriterLock(work_dir, waited=last_report is not None, waited_s=waited_s)
        except BlockingIOError:
            pass
        except OSError as err:
            if err.errno not in _UNSUPPORTED:
                raise
            logger.warning(
                'file locks are not supported where %s lies (%s): going on WITHOUT the one-writer guarantee; '
                'do not start a second writer on this dir (docs/mining.md, "One writer per mining dir")',
                work_dir,
                os.strerror(err.errno),
            )
            return None
        who = describe_writer(work_dir, _holder_of(f))
        waited = time.monotonic() - start
        if if_busy == 'refuse':
            raise MiningDirBusyError(
                f'{who}. Wait for it to finish, pass --wait to wait for it and reuse its outputs, '
                'or use another work dir.'
            )
        if waited >= timeout_s:
            raise MiningDirBusyError(f'{who}; gave up after waiting {waited:.0f} s (timeout {timeout_s:.0f} s).')
        if last_report is None:
            report(f'{who}: waiting for it to finish (at most {timeout_s:.0f} s)')
            last_report = time.monotonic()
        elif time.monotonic() - last_report >= report_every_s:
            report(f'still waiting ({waited:.0f} s): {who}')
            last_report = time.monotonic()
        time.sleep(poll_s)


def add_writer_arguments(parser) -> None:
    """``--wait`` / ``--wait-timeout`` for a tool that writes into a mining dir."""
    parser.add_argument(
        '--wait',
        action='store_true',
        help='another process writes into the same mining dir: wait for it (default: stop at once, naming it)',
    )
    parser.add_argument(
        '--wait-timeout',
        type=float,
        default=WAIT_TIMEOUT_S,
        metavar='SECONDS',
        help='with --wait: the longest wait (default %(default)s)',
    )


def if_busy_of(args) -> str:
    return 'wait' if args.wait else 'refuse'


def tool_writer_lock(work_dir: str, args):
    """``writer_lock`` as a tool's ``add_writer_arguments`` flags ask for."""
    return writer_lock(work_dir, if_busy_of(args), args.wait_timeout)
