"""Content-hashed stage cache with per-batch shards, so that runs resume and re-runs reuse.

A stage's key hashes everything its output depends on: the models' identities (weights
content and options, ``identity.result_identity``) and the stage's options, never the
device, batch sizes, precision or how a path is spelled. Each finished batch is written
atomically as its own shard; a killed run leaves only complete shards behind. Within a
stage, ``ItemCache`` keys every row by its item (a frame, a crop) and that item's input
identity, so a re-run reuses every item found in any shard, whatever the batch sizes that
wrote them, and computes only the rest.
"""

from __future__ import annotations

import os
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .atomic_files import create_npy_memmap, write_json_atomic, write_npy_atomic, write_table_atomic
from .hashing import content_key

CACHE_DIR = 'cache'  # under a mining work dir: every stage's shards, and the search index


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

    def load(
        self, index: int, names: Iterable[str], mmap: bool = False
    ) -> Tuple[Dict[str, pa.Table], Optional[np.ndarray]]:
        """The shard's tables, and its array (memory-mapped with ``mmap``: read only what is used)."""
        base = self._base(index)
        array = np.load(base + '.npy', mmap_mode='r' if mmap else None) if os.path.exists(base + '.npy') else None
        return {name: pq.read_table(f'{base}.{name}.parquet') for name in names}, array

    def completed(self) -> List[int]:
        return sorted(int(name[6:12]) for name in os.listdir(self.dir) if name.endswith('.done'))

    def remove(self, index: int) -> None:
        """Drop a shard: its marker first, so a crash midway leaves no complete-looking shard."""
        base = self._base(index)
        os.remove(base + '.done')
        prefix = os.path.basename(base) + '.'
        for name in os.listdir(self.dir):
            if name.startswith(prefix):
                os.remove(os.path.join(self.dir, name))


ITEM_KEYS = 'keys'  # the table of a shard that names its items
# A table with any number of rows per item (the crops of a frame) names each row's item by its
# position in the shard's keys in this column; merging shards keeps it pointing right.
ITEM_POSITION = 'item_position'


def locate(items: Sequence[str], found: Dict[str, Tuple[int, int]]) -> Tuple[np.ndarray, np.ndarray]:
    """(shard, position in the shard) of every item, as two arrays."""
    located = np.array([found[item] for item in items], dtype=np.int64).reshape(-1, 2)
    return located[:, 0], located[:, 1]


class ItemCache(StageCache):
    """A ``StageCache`` whose shards say which items they hold.

    Every shard carries a ``keys`` table (one ``item`` string per item it computed), and
    ``index`` maps each item to ``(shard, position)``. An item's key is its id and the
    identity of its input (``'<frame_id>@<image digest>'``): a changed image is a new item.
    """

    def save_items(self, index: int, items: Sequence[str], tables: Dict[str, pa.Table], array=None) -> None:
        keys = pa.table({'item': pa.array(list(items), pa.string())})
        self.save(index, {**tables, ITEM_KEYS: keys}, array)

    def index(self) -> Dict[str, Tuple[int, int]]:
        found: Dict[str, Tuple[int, int]] = {}
        for shard in self.completed():
            items = pq.read_table(f'{self._base(shard)}.{ITEM_KEYS}.parquet').column('item').to_pylist()
            for position, item in enumerate(items):
                found.setdefault(item, (shard, position))
        return found

    def gather(
        self, items: Sequence[str], found: Dict[str, Tuple[int, int]], name: str, array_path: Optional[str] = None
    ):
        """The rows of table ``name`` (one row per item) for ``items``, in that order; every
        item must be in ``found`` (``index()``). With ``array_path``, the arrays' rows too (when
        the arrays hold one row per item), written shard by shard into a memory-mapped ``.npy``
        there, so that they never sit in memory together.

        Returns:
            (table, ``np.memmap`` or None); (None, None) for no items.
        """
        shard_of, position = locate(items, found)
        parts, out_rows, out_array = [], [], None
        for shard in np.unique(shard_of):
            rows = np.flatnonzero(shard_of == shard)
            tables, array = self.load(int(shard), (name,), mmap=True)
            parts.append(tables[name].take(pa.array(position[rows])))
            out_rows.append(rows)
            if array_path is not None and array is not None:
                if out_array is None:
                    shape = (len(items), *array.shape[1:])
                    out_array = create_npy_memmap(array_path, shape, array.dtype)
                out_array[rows] = array[position[rows]]
        if not parts:
            return None, None
        order = np.argsort(np.concatenate(out_rows), kind='stable')  # back into the order of items
        if out_array is not None:
            out_array.flush()
        return pa.concat_tables(parts).take(pa.array(order)), out_array

    def next_index(self) -> int:
        return max(self.completed(), default=-1) + 1

    def compact(self, max_rows: int, table_names: Sequence[str]) -> int:
        """Merge consecutive shards into shards of up to ``max_rows`` items, so that a big run
        leaves a few large files instead of one per batch. Each merged shard is complete before
        its parts are removed: a crash midway leaves every item in some complete shard.
        Returns the number of shards left."""
        shards = self.completed()
        groups, group, rows = [], [], 0
        for shard in shards:
            n = pq.read_metadata(f'{self._base(shard)}.{ITEM_KEYS}.parquet').num_rows
            if group and rows + n > max_rows:
                groups.append(group)
                group, rows = [], 0
            group.append(shard)
            rows += n
        if group:
            groups.append(group)
        next_index = self.next_index()
        for group in groups:
            if len(group) == 1:
                continue
            tables: Dict[str, List[pa.Table]] = {name: [] for name in (*table_names, ITEM_KEYS)}
            arrays, items_before = [], 0
            for shard in group:
                loaded, array = self.load(shard, (*table_names, ITEM_KEYS))
                for name, table in loaded.items():
                    if ITEM_POSITION in table.column_names:
                        shifted = pc.add(table.column(ITEM_POSITION), items_before)
                        table = table.set_column(table.schema.get_field_index(ITEM_POSITION), ITEM_POSITION, shifted)
                    tables[name].append(table)
                items_before += loaded[ITEM_KEYS].num_rows
                if array is not None:
                    arrays.append(array)
            merged = {name: pa.concat_tables(parts) for name, parts in tables.items()}
            self.save(next_index, merged, np.concatenate(arrays) if arrays else None)
            next_index += 1
            for shard in group:
                self.remove(shard)
        return len(self.completed())
