"""One writer per mining dir, and a full disk: a clear answer, nothing half-written, a resume."""

import copy
import errno
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conceptminer3d.apis import run_mining
from conceptminer3d.mining.runtime.atomic_files import publishing_directory
from conceptminer3d.mining.runtime.writer_lock import MiningDirBusyError, current_writer, writer_lock

from helpers import REPO, torchrun_env

VAL = 'nuscenes_infos_val.pkl'
TABLES = ('frames.parquet', 'crops.parquet', 'embeddings.npy', 'captions.parquet', 'concepts.parquet')
MINE = os.path.join(REPO, 'tools', 'mine.py')

# Holds the lock of argv[1] until told to go (a line on stdin) or killed.
_HOLDER = """
import sys
from conceptminer3d.mining.runtime.writer_lock import writer_lock
with writer_lock(sys.argv[1]):
    print('held', flush=True)
    sys.stdin.readline()
"""


def _read(path):
    with open(path, 'rb') as f:
        return f.read()


@pytest.fixture
def holder(tmp_path):
    """A live process holding the lock of ``tmp_path/work``: (work_dir, Popen)."""
    work_dir = str(tmp_path / 'work')
    os.makedirs(work_dir)
    child = subprocess.Popen(
        [sys.executable, '-c', _HOLDER, work_dir], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout.readline().strip() == 'held'
    yield work_dir, child
    if child.poll() is None:
        child.kill()
    child.wait()


def test_a_second_writer_is_refused_naming_the_holder_and_a_sigkilled_holder_blocks_nothing(holder):
    work_dir, child = holder
    assert current_writer(work_dir)['pid'] == child.pid
    with pytest.raises(MiningDirBusyError, match=f'PID {child.pid} on .* since .*--wait'):
        with writer_lock(work_dir):
            pass
    child.send_signal(signal.SIGKILL)
    child.wait()
    # The kernel dropped the lock with the process: the next writer starts without waiting.
    with writer_lock(work_dir, if_busy='refuse') as lock:
        assert not lock.waited
        assert current_writer(work_dir)['pid'] == os.getpid()
        with writer_lock(work_dir) as inner:  # re-entrant within one process
            assert inner is lock
    assert current_writer(work_dir) is None


def test_a_waiting_writer_reports_times_out_and_goes_on_once_the_holder_is_done(holder):
    work_dir, child = holder
    messages = []
    with pytest.raises(MiningDirBusyError, match='gave up after waiting'):
        with writer_lock(work_dir, if_busy='wait', timeout_s=0.6, report=messages.append, poll_s=0.1):
            pass
    assert f'PID {child.pid}' in messages[0] and 'waiting' in messages[0]
    child.stdin.write('go\n')
    child.stdin.flush()
    with writer_lock(work_dir, if_busy='wait', timeout_s=60, report=messages.append, poll_s=0.1) as lock:
        assert lock.waited
    assert 'finished' in messages[-1]
    assert child.wait() == 0


def test_a_file_system_without_locks_writes_without_the_guarantee(tmp_path, monkeypatch, caplog):
    def no_locks(*args):
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))

    monkeypatch.setattr(fcntl, 'flock', no_locks)
    with writer_lock(str(tmp_path)) as lock:
        assert not lock.waited
    assert 'WITHOUT the one-writer guarantee' in caplog.text


def test_a_published_directory_is_whole_or_absent_and_the_first_publisher_wins(tmp_path):
    dead = subprocess.Popen(['true'])
    dead.wait()
    final, host = tmp_path / 'key', socket.gethostname()
    (tmp_path / f'key.partial-{host}-{dead.pid}').mkdir()  # a killed build's: removed
    (tmp_path / f'key.partial-{host}-1').mkdir()  # pid 1 is alive: kept
    (tmp_path / f'key.partial-elsewhere-{dead.pid}').mkdir()  # another host's: its PID says nothing here
    kept = [f'key.partial-{host}-1', f'key.partial-elsewhere-{dead.pid}']
    with publishing_directory(str(final)) as publication:
        assert sorted(os.listdir(tmp_path)) == sorted([*kept, os.path.basename(publication.path)])
        (Path(publication.path) / 'a').write_text('first')
    assert publication.published and (final / 'a').read_text() == 'first'
    with publishing_directory(str(final)) as again:  # another process built the same thing: keep the first
        (Path(again.path) / 'a').write_text('second')
    assert not again.published and (final / 'a').read_text() == 'first'
    with pytest.raises(RuntimeError):
        with publishing_directory(str(tmp_path / 'failed')) as failed:
            (Path(failed.path) / 'a').write_text('half')
            raise RuntimeError('the build failed')
    assert sorted(os.listdir(tmp_path)) == sorted(['key', *kept])


@pytest.fixture(scope='module')
def mining_config(session_mining_cfg, tmp_path_factory):
    cfg = copy.deepcopy(session_mining_cfg)
    cfg.num_threads = 1  # the same in every process below, so their outputs are byte-equal
    path = str(tmp_path_factory.mktemp('lock_cfg') / 'mining_cfg.py')
    cfg.dump(path)
    return path


@pytest.fixture(scope='module')
def lone_run(toy_world, mining_config, tmp_path_factory):
    work_dir = str(tmp_path_factory.mktemp('lone') / 'work')
    run_mining(mining_config, toy_world[0], VAL, work_dir, progress=False)
    return work_dir


def _mine_args(config, root, work_dir, *extra):
    return [sys.executable, MINE, config, '--data-root', root, '--ann-file', VAL, '--work-dir', work_dir,
            '--no-progress', '--no-report', *extra]  # fmt: skip


# A run_mining process that takes the dir's lock first and mines when told to (a line on stdin),
# so that the other processes below meet a writer that is certainly still at work.
_FIRST_WRITER = """
import sys
from conceptminer3d.apis import run_mining
from conceptminer3d.mining.runtime.atomic_files import publishing_directory
from conceptminer3d.mining.runtime.writer_lock import writer_lock
config, root, ann_file, work_dir = sys.argv[1:5]
with writer_lock(work_dir):
    print('held', flush=True)
    sys.stdin.readline()
    run_mining(config, root, ann_file, work_dir, progress=False)
"""


def _wait_until(condition, what, timeout_s=300):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f'timed out waiting for {what}'
        time.sleep(0.1)


def test_two_concurrent_runs_on_one_dir_one_mines_one_waits_and_reuses(lone_run, toy_world, mining_config, tmp_path):
    """A second tools/mine.py on a dir being mined stops at once naming the first (exit 2, one
    `error:` line); with --wait it waits and reuses the first's outputs, mining nothing. The
    dir ends as a lone run's, byte for byte."""
    root, _ = toy_world
    work_dir = str(tmp_path / 'work')
    os.makedirs(work_dir)
    pipes = dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first_args = [sys.executable, '-c', _FIRST_WRITER, mining_config, root, VAL, work_dir]
    first = subprocess.Popen(first_args, cwd=REPO, **pipes)
    waiter_log = tmp_path / 'waiter.err'
    waiter = None
    try:
        assert first.stdout.readline().strip() == 'held', first.stderr.read()[-3000:]
        refused = subprocess.run(_mine_args(mining_config, root, work_dir), cwd=REPO, capture_output=True, text=True)
        with open(waiter_log, 'w') as log:
            waiter = subprocess.Popen(_mine_args(mining_config, root, work_dir, '--wait'), cwd=REPO,
                                      stdout=subprocess.DEVNULL, stderr=log, text=True)  # fmt: skip
        waiting = lambda: 'waiting for it to finish' in waiter_log.read_text() or waiter.poll() is not None  # noqa: E731
        _wait_until(waiting, 'the second run to wait')
        first.stdin.write('go\n')
        first.stdin.flush()
        first_err = first.communicate(timeout=600)[1]
        waiter.wait(timeout=600)
    finally:
        for child in (first, waiter):
            if child is not None and child.poll() is None:
                child.kill()
    waiter_err = waiter_log.read_text()
    assert first.returncode == 0, first_err[-3000:]
    assert waiter.returncode == 0, waiter_err[-3000:]
    assert refused.returncode == 2 and 'Traceback' not in refused.stderr, refused.stderr[-3000:]
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith(f'error: {work_dir} is being written by PID {first.pid} on '), last
    assert 'waiting for it to finish' in waiter_err and 'reusing the finished run' in waiter_err
    for name in TABLES:
        assert _read(os.path.join(work_dir, name)) == _read(os.path.join(lone_run, name)), name
    # The waiter computed nothing: the cache holds the first run's batches only, as a lone run's.
    for stage in ('detect_embed', 'captions'):
        (key,) = os.listdir(os.path.join(work_dir, 'cache', stage))
        shards = sorted(os.listdir(os.path.join(work_dir, 'cache', stage, key)))
        assert shards == sorted(os.listdir(os.path.join(lone_run, 'cache', stage, key)))


def test_a_torchrun_job_that_waited_reuses_the_finished_run_and_every_rank_ends(
    lone_run, toy_world, mining_config, tmp_path
):
    """2 gloo ranks of tools/dist_mine.sh --wait on a finished run another process holds: rank 0
    waits, finds the run finished and reuses it; the other rank learns so and the job ends."""
    work_dir = str(tmp_path / 'work')
    shutil.copytree(lone_run, work_dir)
    holder = subprocess.Popen(
        [sys.executable, '-c', _HOLDER, work_dir], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == 'held'
        log = tmp_path / 'job.log'
        with open(log, 'w') as out:
            job = subprocess.Popen(
                ['bash', os.path.join(REPO, 'tools', 'dist_mine.sh'), mining_config, '2', '--data-root', toy_world[0],
                 '--ann-file', VAL, '--work-dir', work_dir, '--no-progress', '--no-report', '--wait'],
                cwd=REPO, env=torchrun_env(), stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        waiting = lambda: 'waiting for it to finish' in log.read_text() or job.poll() is not None  # noqa: E731
        _wait_until(waiting, 'the job to wait')
        holder.stdin.write('go\n')
        holder.stdin.flush()
        assert job.wait(timeout=300) == 0, log.read_text()[-3000:]
    finally:
        for child in (holder, locals().get('job')):
            if child is not None and child.poll() is None:
                child.kill()
    assert 'reusing the finished run' in log.read_text()
    assert not os.listdir(os.path.join(work_dir, '.ranks')), 'coordination files are removed'


# Run inside a private mount namespace (unshare): a tmpfs that a filler file leaves FREE_KB
# free, a mining run that fills it, then the same run again once the filler is gone.
_FULL_DISK = """
set -u
mount -t tmpfs -o size=8m tmpfs "$MNT" || exit 77
avail=$(df -k --output=avail "$MNT" | tail -1)
fallocate -l $(( (avail - FREE_KB) * 1024 )) "$MNT/filler"
"$@" > "$OUT/first.out" 2> "$OUT/first.err"
echo $? > "$OUT/first.rc"
find "$MNT/work" -type f | sed "s|$MNT/work/||" | sort > "$OUT/first.files"
rm "$MNT/filler"
"$@" > "$OUT/second.out" 2> "$OUT/second.err"
echo $? > "$OUT/second.rc"
cp -r "$MNT/work" "$OUT/work"
"""


def test_a_full_disk_stops_with_one_line_leaves_nothing_half_written_and_resumes(
    lone_run, toy_world, mining_config, tmp_path
):
    if shutil.which('unshare') is None or shutil.which('fallocate') is None:
        pytest.skip('needs unshare and fallocate (util-linux) to mount a small tmpfs')
    probe = subprocess.run(['unshare', '--mount', '--propagation', 'private', 'true'], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f'cannot make a mount namespace here: {probe.stderr.decode().strip()}')
    root, _ = toy_world
    mnt, out = tmp_path / 'mnt', tmp_path / 'out'
    mnt.mkdir()
    out.mkdir()
    env = dict(os.environ, MNT=str(mnt), OUT=str(out), FREE_KB='60')
    args = _mine_args(mining_config, root, str(mnt / 'work'))
    done = subprocess.run(['unshare', '--mount', '--propagation', 'private', 'bash', '-c', textwrap.dedent(_FULL_DISK),
                           'full_disk', *args], cwd=REPO, env=env, capture_output=True, text=True)  # fmt: skip
    if done.returncode == 77:
        pytest.skip(f'cannot mount a tmpfs here: {done.stderr.strip()}')
    assert done.returncode == 0, done.stderr
    first_err = (out / 'first.err').read_text()
    assert (out / 'first.rc').read_text().strip() == '2', first_err[-3000:]
    assert 'Traceback' not in first_err
    last = first_err.strip().splitlines()[-1]
    assert last.startswith(f'error: no space left on the device writing {mnt}/work/'), last
    assert 'it needed about' in last and 'was free' in last
    # Nothing half-written, nothing that reads as finished: no scratch file, no manifest, no
    # table, no subset; cache batches only where complete (a .done marker) or marker-less.
    left = (out / 'first.files').read_text().split()
    assert left and not [f for f in left if '.tmp-' in f]
    assert not [f for f in left if not f.startswith('cache/') and f != '.writer.lock'], left
    done_batches = [f for f in left if f.endswith('.done')]
    assert done_batches, 'the run filled the disk after some finished batches'

    second_err = (out / 'second.err').read_text()
    assert (out / 'second.rc').read_text().strip() == '0', second_err[-3000:]
    manifest = json.loads((out / 'work' / 'manifest.json').read_text())
    assert manifest['cache']['detect_embed']['reused_frames'] > 0, 'the re-run resumed from the finished batches'
    for name in TABLES:
        assert _read(str(out / 'work' / name)) == _read(os.path.join(lone_run, name)), name
