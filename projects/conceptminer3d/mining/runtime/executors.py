"""Where the per-image stages run: in this one process, or spread over every rank of a
torchrun / Slurm job.

A stage says what to compute for a numbered list of work batches; an executor says which of
those batches this process computes and how processes hand results to each other. Stages
hold no rank logic, and a batch's number (not the rank that computed it) names its cache
shard, so any number of processes leaves the same shards as one.

Ranks coordinate through files under ``<work_dir>/.ranks/<run id>/``, never by waiting inside
a collective: an NCCL collective times out after 10 minutes, and a rank that finished its
share may wait far longer for the global stages. The one collective is the run id, broadcast
when the executor is built, while every rank is starting up.
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import time
import uuid
from typing import Callable, Sequence, TypeVar

from .atomic_files import write_pickle_atomic

logger = logging.getLogger('conceptminer3d.mining')

T = TypeVar('T')

__all__ = ['LocalExecutor', 'DistributedExecutor', 'build_executor', 'wait_for']

RANKS_DIR = '.ranks'


def wait_for(ready: Callable[[], bool], what: str, poll_s: float = 0.5, report_s: float = 300.0) -> None:
    """Return once ``ready()`` is true, logging every ``report_s`` seconds what is awaited.

    No timeout: a rank that dies ends the whole job (torchrun and ``srun --kill-on-bad-exit``
    stop the other ranks), so a wait is only ever for work that is still running.
    """
    start = last_report = time.monotonic()
    while not ready():
        now = time.monotonic()
        if now - last_report >= report_s:
            logger.info('still waiting for %s (%.0f s)', what, now - start)
            last_report = now
        time.sleep(poll_s)


class LocalExecutor:
    """Everything in this process: it computes every batch and shares with no one."""

    rank = 0
    world_size = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def assign(self, num_batches: int) -> Sequence[int]:
        """The numbers of the batches (of ``num_batches``) this process computes."""
        return range(self.rank, num_batches, self.world_size)

    def share(self, name: str, make: Callable[[], T]) -> T:
        """``make()`` run once, by the main process, and its result given to every process."""
        return make()

    def begin(self) -> None:
        """The job holds the work dir's writer lock and mines: clear what killed jobs left."""

    def finish(self, step: str) -> None:
        """This process is done with ``step``; the main process returns once every process is."""

    def close(self) -> None:
        """Remove what coordination left behind (the main process, once every rank is done)."""


class DistributedExecutor(LocalExecutor):
    """The ranks of an initialised ``torch.distributed`` job, batch ``k`` on rank
    ``k % world_size``, handing results over through files in ``work_dir``.

    Args:
        work_dir (str): the mining work dir every rank writes to (a shared file system).
        poll_s (float): how often a waiting rank looks for the files it waits for.
    """

    def __init__(self, work_dir: str, poll_s: float = 0.5):
        from mmengine.dist import broadcast_object_list, get_dist_info

        self.rank, self.world_size = get_dist_info()
        run_id = [uuid.uuid4().hex[:12] if self.rank == 0 else None]
        broadcast_object_list(run_id)  # every rank is starting up here: no long wait
        self.dir = os.path.join(work_dir, RANKS_DIR, run_id[0])
        self.poll_s = poll_s

    def begin(self) -> None:
        if self.is_main:  # what killed jobs left; only the dir's one writer gets here
            parent = os.path.dirname(self.dir)
            for stale in os.listdir(parent) if os.path.isdir(parent) else ():
                if stale != os.path.basename(self.dir):
                    shutil.rmtree(os.path.join(parent, stale), ignore_errors=True)

    def share(self, name: str, make: Callable[[], T]) -> T:
        path = os.path.join(self.dir, f'{name}.pkl')
        if self.is_main:
            value = make()
            os.makedirs(self.dir, exist_ok=True)
            write_pickle_atomic(value, path)
            return value
        wait_for(lambda: os.path.exists(path), f'rank 0 to share {name!r}', self.poll_s)
        with open(path, 'rb') as f:
            return pickle.load(f)

    def finish(self, step: str) -> None:
        os.makedirs(self.dir, exist_ok=True)
        with open(os.path.join(self.dir, f'{step}.rank{self.rank}.done'), 'w'):
            pass
        if self.is_main:
            markers = [os.path.join(self.dir, f'{step}.rank{r}.done') for r in range(self.world_size)]
            wait_for(lambda: all(map(os.path.exists, markers)), f'every rank to finish {step!r}', self.poll_s)

    def close(self) -> None:
        if self.is_main:
            shutil.rmtree(self.dir, ignore_errors=True)


def build_executor(work_dir: str) -> LocalExecutor:
    """A ``DistributedExecutor`` when ``torch.distributed`` is initialised with more than one
    rank, else a ``LocalExecutor``."""
    from mmengine.dist import get_world_size

    return DistributedExecutor(work_dir) if get_world_size() > 1 else LocalExecutor()
