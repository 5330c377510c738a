"""The HTML report: built from the tables alone, self-contained, and rendered by a real browser."""

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import pyarrow.parquet as pq
import pytest

from conceptminer3d.apis import run_mining
from conceptminer3d.report import GALLERY_CHUNK, build_report

from helpers import REPO

CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')


@pytest.fixture(scope='module')
def mined(toy_world, session_mining_cfg, tmp_path_factory):
    """The toy train pickle mined with all six cameras and the default subsets."""
    root, _ = toy_world
    cfg = copy.deepcopy(session_mining_cfg)
    work_dir = str(tmp_path_factory.mktemp('report') / 'mining')
    run_mining(cfg, root, 'nuscenes_infos_train.pkl', work_dir, progress=False)
    return work_dir


@pytest.fixture(scope='module')
def report(mined):
    return build_report(mined, max_map_points=500, progress=False)


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        self.links += [value for name, value in attrs if name in ('src', 'href') and value]


def _links(path):
    parser = _Links()
    with open(path) as f:
        parser.feed(f.read())
    return parser.links


def _load_js(path, variable):
    with open(path) as f:
        text = f.read()
    assert text.startswith(f'{variable} = ') and text.endswith(';\n')
    return json.loads(text[len(variable) + 3 : -2])


def test_report_is_self_contained_and_links_only_what_it_has(mined, report):
    report_dir = os.path.dirname(report['path'])
    samples = os.path.join(report_dir, 'samples')
    pages = [report['path']] + [os.path.join(samples, name) for name in os.listdir(samples)]
    assert len(pages) == 1 + report['sample_pages']
    for page in pages:
        for link in _links(page):
            target = link.split('#')[0]
            if not target:
                continue
            assert not re.match(r'^[a-z]+:', target) and not target.startswith('/'), f'{page}: {link} is not relative'
            assert os.path.exists(os.path.join(os.path.dirname(page), target)), f'{page}: {link} does not exist'
    ours = [os.path.join(report_dir, 'data', name) for name in os.listdir(os.path.join(report_dir, 'data'))]
    ours += [os.path.join(report_dir, 'assets', name) for name in ('report.js', 'report.css')]
    for path in ours + pages:
        with open(path) as f:
            assert not re.search(r'https?://', f.read()), f'{path} reaches for the network'


def test_report_data_matches_the_tables(mined, report):
    report_dir = os.path.dirname(report['path'])
    data = _load_js(os.path.join(report_dir, 'data', 'report.js'), 'REPORT')
    concepts = pq.read_table(os.path.join(mined, 'concepts.parquet')).to_pandas()
    crops = pq.read_table(os.path.join(mined, 'crops.parquet'))
    gallery = concepts[concepts.group.isin(['Target', 'Rare'])]
    assert data['gallery']['size'] == len(gallery) == report['gallery_crops'] > 0
    assert data['map_of'] == crops.num_rows and len(data['map']) == min(500, crops.num_rows)
    first = _load_js(os.path.join(report_dir, 'data', 'gallery_0.js'), 'REPORT_PAGES[0]')
    assert len(first) == min(GALLERY_CHUNK, len(gallery))
    assert [r['grp'] for r in first][:1] == ['Target'] or 'Target' not in set(gallery.group)
    by_id = concepts.set_index('crop_id')
    for record in first[:20]:
        row = by_id.loc[record['id']]
        assert record['grp'] == row.group and record['top'][0][0] == row.top_concept
        assert os.path.isfile(os.path.join(report_dir, record['th']))
    with open(os.path.join(mined, 'subsets', 'subset_manifest.json')) as f:
        selected = json.load(f)['selected']
    assert report['sample_pages'] == len(selected)
    assert data['counts'] == json.load(open(os.path.join(mined, 'manifest.json')))['counts']


def test_rebuilding_loads_no_model_and_reuses_thumbnails_and_the_map(mined, report):
    child = subprocess.run(
        [
            sys.executable,
            '-c',
            'import sys, json; from conceptminer3d.report import build_report; '
            's = build_report(sys.argv[1], max_map_points=500, progress=False); '
            'heavy = [m for m in ("ultralytics", "open_clip") if m in sys.modules]; '
            'print(json.dumps(dict(s, heavy=heavy)))',
            mined,
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    again = json.loads(child.stdout.strip().splitlines()[-1])
    assert again['heavy'] == [], 'a model library was imported'  # (mmdet itself imports transformers)
    assert again['thumbnails'] == dict(written=0, reused=report['thumbnails']['written'], unreadable=0)
    assert again['seconds'] < report['seconds']  # t-SNE comes from its cache


def test_report_of_a_missing_run_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match='tools/mine.py'):
        build_report(str(tmp_path))


def _dom(url, tmp_path):
    """The page's DOM after its scripts ran, in headless Chromium with every host unresolvable."""
    if CHROMIUM is None:
        pytest.fail('chromium is not installed: `make test` installs it (Debian package chromium)')
    child = subprocess.run(
        [
            CHROMIUM,
            '--headless=new',
            '--no-sandbox',
            '--disable-gpu',
            f'--user-data-dir={tmp_path / "chromium"}',
            '--host-resolver-rules=MAP * ~NOTFOUND',
            '--virtual-time-budget=15000',
            '--dump-dom',
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    return child.stdout


def test_browser_renders_the_gallery_filters_and_the_map(mined, report, tmp_path):
    report_dir = os.path.dirname(report['path'])
    data = _load_js(os.path.join(report_dir, 'data', 'report.js'), 'REPORT')
    groups = data['gallery']['group']
    dom = _dom(f'file://{report["path"]}', tmp_path)
    assert 'data-ready="1"' in dom, 'the gallery script did not finish'
    assert f'data-matches="{len(groups)}"' in dom
    assert dom.count('class="card ') == min(48, len(groups))
    assert f'data-points="{len(data["map"])}"' in dom

    concept = data['gallery']['concepts'][data['gallery']['concept'][0]]
    want = sum(
        1
        for g, c in zip(groups, data['gallery']['concept'])
        if g == 'Rare' and data['gallery']['concepts'][c] == concept
    )
    dom = _dom(f'file://{report["path"]}#group=Rare&concept={concept}', tmp_path)
    assert f'data-matches="{want}"' in dom
    assert dom.count('class="card Rare"') == min(48, want) and 'class="card Target"' not in dom


def test_browser_shows_why_a_sample_was_chosen(mined, report, tmp_path):
    report_dir = os.path.dirname(report['path'])
    with open(os.path.join(mined, 'subsets', 'subset_manifest.json')) as f:
        sample = next(s for s in json.load(f)['selected'] if s['reason'] == 'target')
    crops = pq.read_table(os.path.join(mined, 'crops.parquet')).to_pandas()
    dom = _dom(f'file://{os.path.join(report_dir, "samples", sample["sample_token"] + ".html")}', tmp_path)
    assert dom.count('<figure class="camera">') == 6
    assert dom.count('class="box') == (crops.sample_token == sample['sample_token']).sum()
    chosen = [c for c in sample['crops'] if c['group'] == 'Target' and c['concept'] == sample['concept']]
    assert dom.count('class="box chosen"') == len(chosen) > 0
    assert f'<b>{sample["concept"]}</b>' in dom


def test_report_shows_the_selection_measure_and_says_when_it_is_stale(toy_world, mined, report):
    from conceptminer3d.subsets import SubsetSpec, build_subsets
    from conceptminer3d.subsets.evaluation import evaluate_selection

    with open(report['path']) as f:
        assert 'Not measured: <code>tools/evaluate_selection.py' in f.read()
    evaluation = evaluate_selection(mined, draws=50)
    path = build_report(mined, max_map_points=500, progress=False)['path']
    with open(path) as f:
        html = f.read()
    table = html[html.index('<table id="selection-eval">') :]
    for name, s in evaluation['subsets'].items():
        rare = s['groups']['rare']['instances']
        assert f'<tr><td>{name}</td><td>{s["samples"]}</td><td>{rare["value"]}</td>' in table
    assert 'class="stale"' not in html
    # the subsets redrawn with another seed: the table no longer describes them, and says so
    build_subsets(mined, os.path.join(toy_world[0], 'nuscenes_infos_train.pkl'), SubsetSpec(seed=5))
    with open(build_report(mined, max_map_points=500, progress=False)['path']) as f:
        assert 'class="stale"' in f.read()
