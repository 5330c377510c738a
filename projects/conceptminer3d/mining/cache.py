"""Content-hashed stage cache with per-batch shards, so that runs resume and re-runs reuse.

A stage's key hashes everything its output depends on (inputs, model config, parameters).
Each finished batch is written atomically as its own shard; a killed run leaves only
complete shards behind, and the next run with the same key skips them.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .contracts import write_json_atomic, write_npy_atomic, write_table_atomic


def content_key(payload) -> str:
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class StageCache:
    """The shards of one stage under one key: ``<root>/<stage>/<key>/batch_<i>.*``.

    Shard ``i`` is complete once its ``.done`` marker exists. ``key.json`` keeps the payload,
    so a cache directory says what it was computed from.

    Args:
        root (str): the cache directory (the pipeline uses ``<work_dir>/cache``).
        stage (str): the stage's name, one directory per stage.
        payload: everything the stage's output depends on, JSON-serialisable (other values
            are hashed by ``str``); its hash is the key.
    """

    def __init__(self, root: str, stage: str, payload):
        self.key = content_key(payload)
        self.dir = os.path.join(root, stage, self.key)
        os.makedirs(self.dir, exist_ok=True)
        key_file = os.path.join(self.dir, 'key.json')
        if not os.path.exists(key_file):
            write_json_atomic(payload, key_file)

    def _base(self, index: int) -> str:
        return os.path.join(self.dir, f'batch_{index:06d}')

    def has(self, index: int) -> bool:
        return os.path.exists(self._base(index) + '.done')

    def save(self, index: int, tables: Dict[str, pa.Table], array: Optional[np.ndarray] = None) -> None:
        base = self._base(index)
        if array is not None:
            write_npy_atomic(array, base + '.npy')
        for name, table in tables.items():
            write_table_atomic(table, f'{base}.{name}.parquet')
        with open(base + '.done', 'w'):  # written last: marks the shard complete
            pass

    def load(self, index: int, names: Iterable[str]) -> Tuple[Dict[str, pa.Table], Optional[np.ndarray]]:
        base = self._base(index)
        array = np.load(base + '.npy') if os.path.exists(base + '.npy') else None
        return {name: pq.read_table(f'{base}.{name}.parquet') for name in names}, array

    def completed(self) -> List[int]:
        return sorted(int(name[6:12]) for name in os.listdir(self.dir) if name.endswith('.done'))
