"""The detection stage's outputs, assembled from the per-frame results in its cache shards.

A run's frames may be spread over shards written by earlier runs with other batch sizes, and
a shard may hold frames this run does not ask for; these functions take exactly the asked
frames, in the asked order, without concatenating the embeddings in memory.
"""

from __future__ import annotations

import os
from typing import Dict, List, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..contracts import (
    CAPTIONS_FILE,
    CONCEPTS_FILE,
    CROP_SCHEMA,
    CROPS_FILE,
    EMBEDDINGS_FILE,
    FRAME_IDENTITY_COLUMNS,
    FRAME_SCHEMA,
    FRAME_STATUS_OK,
    FRAMES_FILE,
    MANIFEST_FILE,
    Frame,
)
from .atomic_files import create_npy_memmap, write_npy_atomic, write_table_atomic
from .cache import ITEM_KEYS, ITEM_POSITION, ItemCache, locate

__all__ = ['crops_from_cache', 'frames_table_from_cache']

Found = Dict[str, Tuple[int, int]]


def frames_table_from_cache(frames: List[Frame], cache: ItemCache, items: Sequence[str], found: Found) -> pa.Table:
    """The cached results of every frame (size, status, detection counts), with its identity
    columns from this run's ``frames``: the same image may sit under another data root or at
    another sample index than when it was detected."""
    cached, _ = cache.gather(items, found, 'frames')
    columns = [
        pa.array([getattr(f, field.name) for f in frames], field.type)
        if field.name in FRAME_IDENTITY_COLUMNS
        else cached.column(field.name)
        for field in FRAME_SCHEMA
    ]
    return pa.Table.from_arrays(columns, schema=FRAME_SCHEMA)


def crops_from_cache(cache: ItemCache, items: Sequence[str], found: Found, embeddings_path: str):
    """Every frame's crops, in frame order (then crop index), and their embeddings written
    shard by shard into a memory-mapped ``.npy`` at ``embeddings_path``.

    Returns:
        (crops table, ``np.memmap`` of shape (crops, dim)), row-aligned.
    """
    shard_of, position = locate(items, found)
    parts, sources, dim = [], [], 0
    for shard in np.unique(shard_of):
        frames_here = np.flatnonzero(shard_of == shard)
        tables, array = cache.load(int(shard), ('crops', ITEM_KEYS), mmap=True)
        crops = tables['crops']
        dim = array.shape[1] if array is not None and array.ndim == 2 else dim
        # Output frame of each of the shard's items (-1: not asked for), then of each crop row.
        output_frame = np.full(tables[ITEM_KEYS].num_rows, -1, np.int64)
        output_frame[position[frames_here]] = frames_here
        frame_of_row = output_frame[crops.column(ITEM_POSITION).to_numpy()]
        rows = np.flatnonzero(frame_of_row >= 0)
        part = crops.take(pa.array(rows)).drop_columns([ITEM_POSITION])
        parts.append(part.append_column('_frame', pa.array(frame_of_row[rows], pa.int64())))
        sources.append((int(shard), rows))
    table = pa.concat_tables(parts)
    order = pc.sort_indices(table, sort_keys=[('_frame', 'ascending'), ('crop_index', 'ascending')]).to_numpy()
    crops = table.take(pa.array(order)).drop_columns(['_frame']).cast(CROP_SCHEMA)
    destination = np.empty(len(order), np.int64)
    destination[order] = np.arange(len(order))  # row k of the concatenation goes to destination[k]
    embeddings = create_npy_memmap(embeddings_path, (len(order), dim), np.float32)
    start = 0
    for shard, rows in sources:
        if len(rows):
            _, array = cache.load(shard, (), mmap=True)
            embeddings[destination[start : start + len(rows)]] = array[rows]
        start += len(rows)
    embeddings.flush()
    return crops, embeddings


def frame_skips(frames: pa.Table) -> Dict[str, int]:
    """What the per-image stage skipped, counted from the frames table (so a resumed or cached
    run reports what an uninterrupted one does): images by status, frames without detections,
    crops too small or of a filtered class."""
    status = frames.column('status')
    skips = {
        f'images_{entry["values"]}': entry['counts']
        for entry in pc.value_counts(status).to_pylist()
        if entry['values'] != FRAME_STATUS_OK
    }
    no_detections = pc.and_(pc.equal(status, FRAME_STATUS_OK), pc.equal(frames.column('num_detections'), 0))
    skips['frames_without_detections'] = int(pc.sum(no_detections).as_py() or 0)
    skips['crops_too_small'] = int(pc.sum(frames.column('num_too_small')).as_py() or 0)
    skips['crops_filtered_by_class'] = int(pc.sum(frames.column('num_filtered')).as_py() or 0)
    return skips


def write_mining_tables(
    work_dir: str, frames: pa.Table, crops: pa.Table, embeddings: np.ndarray, captions: pa.Table, concepts: pa.Table
) -> None:
    """Every table a concept source hands on (the manifest comes last, written by the source).

    ``embeddings`` may be a ``np.memmap`` of a whole ``.npy`` file already written in
    ``work_dir``: that file is moved into place, not copied."""
    out = lambda name: os.path.join(work_dir, name)  # noqa: E731
    # A previous run's manifest would vouch for a mix of its tables and these if a write
    # failed midway (a full disk): without one the dir reads as unfinished until the source
    # writes its new manifest last.
    if os.path.exists(out(MANIFEST_FILE)):
        os.remove(out(MANIFEST_FILE))
    write_table_atomic(frames, out(FRAMES_FILE))
    write_table_atomic(crops, out(CROPS_FILE))
    filename = getattr(embeddings, 'filename', None)
    if isinstance(embeddings, np.memmap) and filename and os.path.dirname(filename) == os.path.abspath(work_dir):
        embeddings.flush()
        os.replace(filename, out(EMBEDDINGS_FILE))
    else:
        write_npy_atomic(np.asarray(embeddings), out(EMBEDDINGS_FILE))
    write_table_atomic(captions, out(CAPTIONS_FILE))
    write_table_atomic(concepts, out(CONCEPTS_FILE))
