"""The report's HTML: the index (summary, map, gallery, selected samples) and one page per
selected sample. Static markup only; ``static/report.js`` draws the charts (Chart.js) and the
gallery from the data files."""

from __future__ import annotations

import os
from html import escape
from typing import Dict, Optional

import pandas as pd

CAMERA_LAYOUT = ('CAM_FRONT_LEFT', 'CAM_FRONT', 'CAM_FRONT_RIGHT', 'CAM_BACK_LEFT', 'CAM_BACK', 'CAM_BACK_RIGHT')

_HEAD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{title}</title>
<link rel="stylesheet" href="{assets}/report.css">
</head>
"""


def _table(rows, header) -> str:
    head = ''.join(f'<th>{escape(str(h))}</th>' for h in header)
    body = ''.join('<tr>' + ''.join(f'<td>{escape(str(v))}</td>' for v in row) + '</tr>' for row in rows)
    return f'<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _selection_section(evaluation: Optional[dict]) -> str:
    """The table of ``tools/evaluate_selection.py``: rare objects per subset against random draws."""
    if evaluation is None:
        return (
            '<p>Not measured: <code>tools/evaluate_selection.py WORK_DIR</code> counts the rare 3D objects each '
            'subset holds against random subsets of the same size (seconds, no training).</p>'
        )
    rows = []
    for name, s in evaluation['subsets'].items():
        rare = s['groups']['rare']['instances']
        fp = s.get('false_positives') or {}
        rows.append(
            (
                name,
                s['samples'],
                rare['value'],
                f'{rare["ratio"]:.2f}×' if rare['ratio'] is not None else '',
                f'{rare["percentile"]:.0f}',
                f'{rare["random"]["mean"]:.0f} ({rare["random"]["low"]:.0f}–{rare["random"]["high"]:.0f})',
                s['oracle']['rare_instances'],
                s['oracle']['share_of_value'] if s['oracle']['share_of_value'] is not None else '',
                f'{fp["false_positive"]} of {fp["slots"]}' if fp.get('slots') else '',
            )
        )
    stale = (
        ''
        if evaluation.get('current')
        else '<p class="stale">The subsets changed since this was measured: run '
        '<code>tools/evaluate_selection.py</code> again.</p>'
    )
    classes = ', '.join(evaluation['rare_classes'])
    header = [
        'subset',
        'samples',
        'rare instances',
        '× random',
        'percentile',
        f'random mean (95%, {evaluation["draws"]} draws)',
        'label oracle',
        'share of oracle value',
        'Target slots on a distractor',
    ]
    return (
        f'{stale}<p class="muted">3D instances of the rare classes ({escape(classes)}) in each subset, counted as '
        'training keeps them.</p>' + _table(rows, header).replace('<table>', '<table id="selection-eval">', 1)
    )


def render_index(data: dict, subsets: Optional[dict], selection_eval: Optional[dict] = None) -> str:
    counts = data['counts']
    summary = [
        ('frames', counts.get('frames', 0)),
        ('samples', counts.get('samples', 0)),
        ('crops', counts.get('crops', 0)),
        ('outliers (combined)', counts.get('outliers', 0)),
        *[(f'outliers: {m}', n) for m, n in counts.get('outliers_per_method', {}).items()],
        ('captions', counts.get('captions', 0)),
        *[(f'group: {g}', n) for g, n in sorted(counts.get('groups', {}).items())],
    ]
    skips = [(k, v) for k, v in data['skips'].items() if v]
    stages = [
        (name, s['items'], f'{s["seconds"]:.2f}', s['items_per_s'] if s['items_per_s'] is not None else '')
        for name, s in data['stages'].items()
    ]
    selected_rows = ''
    if subsets:
        for s in subsets.get('selected', []):
            token = escape(s['sample_token'])
            why = escape(s.get('concept') or '')
            selected_rows += (
                f'<tr><td><a href="samples/{token}.html">{token}</a></td><td>{escape(s["reason"])}</td>'
                f'<td>{why}</td><td>{s.get("score", "")}</td><td>{len(s.get("crops", []))}</td></tr>'
            )
    selected = (
        '<p>No subsets in this run (the mining config has no <code>subsets</code>).</p>'
        if subsets is None
        else '<table id="selected-samples"><thead><tr><th>sample</th><th>rule</th><th>concept</th>'
        f'<th>score</th><th>crops</th></tr></thead><tbody>{selected_rows}</tbody></table>'
    )
    return (
        _HEAD.format(title='ConceptMiner3D report', assets='assets')
        + f"""<body>
<h1>ConceptMiner3D report</h1>
<p class="muted">{escape(data['run']['work_dir'])} · {escape(str(data['run']['inputs'].get('ann_file', '')))}</p>
<nav><a href="#summary">Summary</a> <a href="#map">Embedding map</a> <a href="#gallery">Target and Rare crops</a>
<a href="#samples">Selected samples</a></nav>
<section id="summary"><h2>Summary</h2>
<div class="cols"><div>{_table(summary, ['what', 'count'])}
<h3>Skips</h3>{_table(skips, ['skip', 'count']) if skips else '<p>none</p>'}</div>
<div><h3>Top concepts</h3><canvas id="concept-chart" height="260"></canvas></div></div>
<h3>3D instances per class: subset, random baseline and full train set</h3>
<canvas id="instance-chart" height="120"></canvas>
<h3>Rare objects caught by each subset</h3>{_selection_section(selection_eval)}
<h3>Stage timings</h3>{_table(stages, ['stage', 'items', 'seconds', 'items/s'])}
</section>
<section id="map"><h2>Embedding map</h2>
<p class="muted" id="map-note"></p>
<div class="map-wrap"><canvas id="map-chart" height="180"></canvas><div id="map-tip" hidden></div></div>
</section>
<section id="gallery"><h2>Target and Rare crops</h2>
<div class="filters">
<label>group <select id="filter-group"><option value="">all</option><option>Target</option>
<option>Rare</option></select></label>
<label>concept <select id="filter-concept"><option value="">all</option></select></label>
<label>camera <select id="filter-camera"><option value="">all</option></select></label>
<button id="prev">&larr;</button> <span id="page-info"></span> <button id="next">&rarr;</button>
</div>
<div id="cards"></div>
</section>
<section id="samples"><h2>Selected samples</h2>{selected}</section>
<script src="assets/chart.umd.min.js"></script>
<script>window.REPORT_PAGES = {{}};</script>
<script src="data/report.js"></script>
<script src="assets/report.js"></script>
</body></html>
"""
    )


def render_sample_page(
    sample: dict, crops: pd.DataFrame, frames: pd.DataFrame, by_crop: Dict[str, dict], report_dir: str
) -> str:
    """Why a sample was chosen, and its six images with every crop box (the chosen concept's
    crops highlighted). Images are linked where they are, by a path relative to the page."""
    chosen = sample.get('concept')
    rows, cameras = [], []
    for c in sample.get('crops', []):
        mark = ' class="chosen"' if chosen and c['concept'] == chosen and c['group'] == 'Target' else ''
        thumb = by_crop.get(c['crop_id'], {}).get('th')
        img = f'<img src="../{escape(thumb)}" alt="">' if thumb else ''
        rows.append(
            f'<tr{mark}><td>{img}</td><td>{escape(c["crop_id"])}</td><td>{escape(c["group"])}</td>'
            f'<td>{escape(c["concept"])}</td><td>{c["score"]}</td></tr>'
        )
    concept_of = {c['crop_id']: c for c in sample.get('crops', [])}
    page_dir = os.path.join(report_dir, 'samples')
    # As the cameras sit on the car: the front row, then the back row seen from behind.
    order = {camera: i for i, camera in enumerate(CAMERA_LAYOUT)}
    for frame in sorted(frames.itertuples(), key=lambda f: (order.get(f.camera, len(order)), f.camera)):
        width, height = max(int(frame.width or 0), 1), max(int(frame.height or 0), 1)
        boxes = ''
        for crop in crops[crops.camera == frame.camera].itertuples():
            info = concept_of.get(crop.crop_id, {})
            is_chosen = chosen and info.get('concept') == chosen and info.get('group') == 'Target'
            left, top = 100 * crop.crop_x1 / width, 100 * crop.crop_y1 / height
            w, h = 100 * (crop.crop_x2 - crop.crop_x1) / width, 100 * (crop.crop_y2 - crop.crop_y1) / height
            label = escape(info.get('concept') or crop.yolo_class)
            boxes += (
                f'<div class="box{" chosen" if is_chosen else ""}" title="{escape(crop.crop_id)}" '
                f'style="left:{left:.2f}%;top:{top:.2f}%;width:{w:.2f}%;height:{h:.2f}%"><span>{label}</span></div>'
            )
        src = escape(os.path.relpath(frame.img_path, page_dir))
        cameras.append(
            f'<figure class="camera"><div class="frame"><img src="{src}" alt="{escape(frame.camera)}">{boxes}</div>'
            f'<figcaption>{escape(frame.camera)}</figcaption></figure>'
        )
    reason = {'target': 'Target slot', 'rare': 'Rare top-up', 'random': 'random draw'}.get(
        sample['reason'], sample['reason']
    )
    why = f'{reason}' + (f': <b>{escape(chosen)}</b> (score {sample.get("score")})' if chosen else '')
    return (
        _HEAD.format(title=f'sample {escape(sample["sample_token"])}', assets='../assets')
        + f"""<body>
<p><a href="../index.html#samples">&larr; report</a></p>
<h1>Sample {escape(sample['sample_token'])}</h1>
<p class="why">Chosen by the {why}. Scene {escape(str(sample.get('scene_token', '')))}.</p>
<div class="cameras">{''.join(cameras)}</div>
<h2>Its crops</h2>
<table class="crops"><thead><tr><th></th><th>crop</th><th>group</th><th>concept</th><th>score</th></tr></thead>
<tbody>{''.join(rows)}</tbody></table>
</body></html>
"""
    )
