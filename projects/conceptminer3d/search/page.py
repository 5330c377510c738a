"""The search results as a page: one card per crop (thumbnail, score, sample, camera, class,
concept, group); a click opens the camera image it was cut from. Self-contained and offline,
like the report: the thumbnails and the stylesheet sit beside the page, the camera images are
linked where they are."""

from __future__ import annotations

import os
import shutil
from html import escape
from typing import List

import pandas as pd
import pyarrow.parquet as pq

from ..mining.contracts import FRAMES_FILE
from ..mining.runtime.atomic_files import write_text_atomic
from ..report.builder import STATIC
from ..report.thumbnails import thumbnail_name, write_thumbnails
from .queries import Query

PAGE_FILE = 'index.html'
_STYLESHEET = 'report.css'


def _frame_paths(work_dir: str, tokens) -> dict:
    frames = pq.read_table(
        os.path.join(work_dir, FRAMES_FILE),
        columns=['sample_token', 'camera', 'img_path'],
        filters=[('sample_token', 'in', sorted(set(tokens)))],
    ).to_pandas()
    return dict(zip(zip(frames.sample_token, frames.camera), frames.img_path))


def write_search_page(
    out_dir: str, results: pd.DataFrame, queries: List[Query], work_dir: str, progress: bool = True
) -> str:
    """Write ``out_dir/index.html`` for ``results`` (best first); returns its path."""
    paths = _frame_paths(work_dir, results.sample_token) if len(results) else {}
    boxes = results[['crop_x1', 'crop_y1', 'crop_x2', 'crop_y2']].to_numpy()
    crops = [
        (cid, paths.get((t, c), ''), box)
        for cid, t, c, box in zip(results.crop_id, results.sample_token, results.camera, boxes)
    ]
    counts = write_thumbnails(out_dir, crops, progress=progress)
    os.makedirs(os.path.join(out_dir, 'assets'), exist_ok=True)
    shutil.copyfile(os.path.join(STATIC, _STYLESHEET), os.path.join(out_dir, 'assets', _STYLESHEET))

    cards = []
    for row, (crop_id, image_path, box) in zip(results.itertuples(index=False), crops):
        thumb = thumbnail_name(crop_id, box)
        frame = escape(os.path.relpath(image_path, out_dir)) if image_path else ''
        cards.append(
            f'<div class="card {escape(row.group)}"><a href="{frame}" title="open the camera image">'
            f'<img src="{escape(thumb)}" alt="{escape(crop_id)}"></a>'
            f'<div class="title">#{row.rank} &middot; {row.score:.3f}</div>'
            f'<div>{escape(row.yolo_class)} &rarr; {escape(row.top_concept or "-")} '
            f'<span class="muted">{escape(row.group or "not scored")}</span></div>'
            f'<div class="muted">{escape(row.sample_token)} &middot; {escape(row.camera)} &middot; '
            f'box {int(row.x1)},{int(row.y1)},{int(row.x2)},{int(row.y2)}</div></div>'
        )
    asked = ''.join(f'<li>{escape(q.kind)}: <code>{escape(q.value)}</code></li>' for q in queries)
    unreadable = (
        f'<p class="muted">{counts["unreadable"]} crops have no thumbnail: their image is gone.</p>'
        if counts['unreadable']
        else ''
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>search: {escape(' + '.join(q.value for q in queries))}</title>
<link rel="stylesheet" href="assets/{_STYLESHEET}">
</head><body>
<h1>{len(results)} crops of {escape(os.path.abspath(work_dir))}</h1>
<ul>{asked}</ul>{unreadable}
<div id="cards">{''.join(cards)}</div>
</body></html>
"""
    path = os.path.join(out_dir, PAGE_FILE)
    write_text_atomic(page, path)
    return path
