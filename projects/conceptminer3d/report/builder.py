"""Build ``WORK_DIR/report/``: a self-contained HTML report of a mining run, from its tables.

No model is loaded and nothing is fetched: the page, its scripts (Chart.js, vendored under
``static/``) and its data files sit next to each other and open from the file system. Crop
thumbnails are written once (``thumbnails``), the embedding map is computed once per set of
points (``embedding_map``), and the gallery's crops are split into data files of
``GALLERY_CHUNK`` crops that the page loads when it shows them, so a run of 100,000s of crops
gives a report that opens at once.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from typing import Dict, List, Optional

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from ..mining.contracts import (
    CAPTIONS_FILE,
    CONCEPTS_FILE,
    CROPS_FILE,
    EMBEDDINGS_FILE,
    FRAMES_FILE,
    GROUP_RARE,
    GROUP_TARGET,
    MANIFEST_FILE,
    MINING_TABLE_FILES,
)
from ..mining.runtime.atomic_files import write_text_atomic
from ..subsets import SUBSET_DIR, SUBSET_MANIFEST
from ..subsets.evaluation import SELECTION_EVAL_FILE, is_current
from .embedding_map import embedding_map, map_sample
from .pages import render_index, render_sample_page
from .thumbnails import thumbnail_name, write_thumbnails

__all__ = ['REPORT_DIR', 'GALLERY_CHUNK', 'MAX_MAP_POINTS', 'build_report']

REPORT_DIR = 'report'
GALLERY_CHUNK = 200  # gallery crops per data file
MAX_MAP_POINTS = 20_000  # t-SNE beyond a few tens of thousands of points takes too long to wait for
STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'static')
SUBSET_MANIFEST_PATH = os.path.join(SUBSET_DIR, SUBSET_MANIFEST)


def _write_js(path: str, variable: str, value) -> None:
    """Data as a script (``window.<variable> = ...``): a page opened from the file system may
    load scripts, but not fetch JSON."""
    write_text_atomic(f'{variable} = {json.dumps(value, separators=(",", ":"), allow_nan=False)};\n', path)


def _crop_table(work_dir: str) -> pd.DataFrame:
    """One row per crop: its box, YOLO class and outlier scores, and (for the scored crops)
    group, top concepts and caption."""
    crops = pq.read_table(os.path.join(work_dir, CROPS_FILE)).to_pandas()
    concepts = pq.read_table(
        os.path.join(work_dir, CONCEPTS_FILE), columns=['crop_id', 'group', 'top_concepts', 'top_scores', 'top_concept']
    ).to_pandas()
    captions = pq.read_table(os.path.join(work_dir, CAPTIONS_FILE), columns=['crop_id', 'caption']).to_pandas()
    table = crops.merge(concepts, on='crop_id', how='left').merge(captions, on='crop_id', how='left')
    table['group'] = table['group'].fillna('')
    table['caption'] = table['caption'].fillna('')
    return table


def _crop_record(row, methods: List[str], thumb: str, selected: Dict[str, str]) -> dict:
    top = [] if not isinstance(row.top_concepts, np.ndarray) else list(zip(row.top_concepts, row.top_scores))
    return dict(
        id=row.crop_id,
        cam=row.camera,
        cls=row.yolo_class,
        conf=round(float(row.yolo_conf), 3),
        cap=row.caption,
        grp=row.group,
        top=[[str(c), round(float(s), 4)] for c, s in top],
        out={m: round(float(getattr(row, f'outlier_score_{m}')), 4) for m in methods},
        o=bool(getattr(row, 'is_outlier', False)),  # the annotation source flags no outliers
        th=thumb,
        page=selected.get(row.sample_token, ''),
    )


def build_report(
    work_dir: str, out_dir: Optional[str] = None, max_map_points: int = MAX_MAP_POINTS, progress: bool = True
) -> dict:
    """Write the report of the mining run in ``work_dir`` to ``out_dir`` (default
    ``work_dir/report``); returns what was written (sizes, counts, seconds)."""
    start = time.perf_counter()
    missing = [
        name for name in (*MINING_TABLE_FILES, MANIFEST_FILE) if not os.path.isfile(os.path.join(work_dir, name))
    ]
    if missing:
        raise FileNotFoundError(f'{work_dir} holds no finished mining run: {missing} missing (run tools/mine.py)')
    out_dir = out_dir or os.path.join(work_dir, REPORT_DIR)
    for sub in ('data', 'samples', 'assets'):
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
    with open(os.path.join(work_dir, MANIFEST_FILE)) as f:
        manifest = json.load(f)
    subsets = None
    if os.path.isfile(os.path.join(work_dir, SUBSET_MANIFEST_PATH)):
        with open(os.path.join(work_dir, SUBSET_MANIFEST_PATH)) as f:
            subsets = json.load(f)
    selection_eval = None
    if os.path.isfile(os.path.join(work_dir, SELECTION_EVAL_FILE)):
        with open(os.path.join(work_dir, SELECTION_EVAL_FILE)) as f:
            selection_eval = json.load(f)
        selection_eval['current'] = is_current(selection_eval, work_dir)

    frames = pq.read_table(os.path.join(work_dir, FRAMES_FILE)).to_pandas()
    path_of = dict(zip(zip(frames.sample_token, frames.camera), frames.img_path))
    crops = _crop_table(work_dir)
    methods = sorted(c[len('outlier_score_') :] for c in crops.columns if c.startswith('outlier_score_'))
    thumbs = [
        thumbnail_name(cid, box)
        for cid, box in zip(crops.crop_id, crops[['crop_x1', 'crop_y1', 'crop_x2', 'crop_y2']].to_numpy())
    ]
    crops['thumb'] = thumbs
    selected = {s['sample_token']: f'samples/{s["sample_token"]}.html' for s in (subsets or {}).get('selected', [])}

    # Gallery: Target, then Rare crops, strongest concept first.
    gallery = crops[crops.group.isin([GROUP_TARGET, GROUP_RARE])].copy()
    gallery['order'] = gallery.group.map({GROUP_TARGET: 0, GROUP_RARE: 1})
    gallery['score'] = gallery.top_scores.map(lambda s: float(s[0]) if len(s) else 0.0)
    gallery = gallery.sort_values(['order', 'score', 'crop_id'], ascending=[True, False, True], kind='stable')
    map_rows = map_sample(len(crops), max_map_points)
    needed = pd.concat([gallery, crops.iloc[map_rows]]).drop_duplicates('crop_id')
    thumb_counts = write_thumbnails(
        out_dir,
        [
            (r.crop_id, path_of[(r.sample_token, r.camera)], (r.crop_x1, r.crop_y1, r.crop_x2, r.crop_y2))
            for r in needed.itertuples()
        ],
        progress=progress,
    )

    records = [_crop_record(r, methods, r.thumb, selected) for r in gallery.itertuples()]
    for k in range(0, max(len(records), 1), GALLERY_CHUNK):
        _write_js(
            os.path.join(out_dir, 'data', f'gallery_{k // GALLERY_CHUNK}.js'),
            f'REPORT_PAGES[{k // GALLERY_CHUNK}]',
            records[k : k + GALLERY_CHUNK],
        )
    concepts_seen = sorted({r['top'][0][0] for r in records if r['top']})
    cameras = sorted(crops.camera.unique().tolist())

    embeddings = np.load(os.path.join(work_dir, EMBEDDINGS_FILE), mmap_mode='r')
    xy = embedding_map(out_dir, embeddings, map_rows) if embeddings.ndim == 2 and embeddings.shape[1] else None
    map_points = []
    if xy is not None:
        mapped = crops.iloc[map_rows]
        for (x, y), r in zip(xy, mapped.itertuples()):
            label = r.caption or (r.top_concept if isinstance(r.top_concept, str) else r.yolo_class)
            map_points.append(
                [round(float(x), 4), round(float(y), 4), r.group, bool(r.is_outlier), r.thumb, label, r.crop_id]
            )

    data = dict(
        run=dict(work_dir=os.path.abspath(work_dir), inputs=manifest.get('inputs', {})),
        counts=manifest.get('counts', {}),
        skips=manifest.get('skips', {}),
        stages=manifest.get('stages', {}),
        top_concepts=Counter(crops.top_concept.dropna()).most_common(20),
        instances=(subsets or {}).get('instances_per_class', {}),
        reasons=(subsets or {}).get('reasons', {}),
        gallery=dict(
            size=len(records),
            chunk=GALLERY_CHUNK,
            concept=[concepts_seen.index(r['top'][0][0]) if r['top'] else -1 for r in records],
            camera=[cameras.index(r['cam']) for r in records],
            group=[r['grp'] for r in records],
            concepts=concepts_seen,
            cameras=cameras,
        ),
        map=map_points,
        map_of=len(crops),
    )
    _write_js(os.path.join(out_dir, 'data', 'report.js'), 'REPORT', data)
    for name in os.listdir(STATIC):
        shutil.copyfile(os.path.join(STATIC, name), os.path.join(out_dir, 'assets', name))

    by_crop = {r['id']: r for r in records}
    for sample in (subsets or {}).get('selected', []):
        frame_crops = crops[crops.sample_token == sample['sample_token']]
        page = render_sample_page(
            sample, frame_crops, frames[frames.sample_token == sample['sample_token']], by_crop, out_dir
        )
        write_text_atomic(page, os.path.join(out_dir, selected[sample['sample_token']]))
    write_text_atomic(render_index(data, subsets, selection_eval), os.path.join(out_dir, 'index.html'))

    size = sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(out_dir) for f in files)
    return dict(
        path=os.path.join(out_dir, 'index.html'),
        crops=len(crops),
        gallery_crops=len(records),
        map_points=len(map_points),
        sample_pages=len(selected),
        thumbnails=thumb_counts,
        megabytes=round(size / 2**20, 2),
        seconds=round(time.perf_counter() - start, 2),
    )
