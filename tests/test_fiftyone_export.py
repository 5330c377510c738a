"""The FiftyOne export of a toy mining run, on a real FiftyOne database (its own mongod, in a
temporary directory): what the dataset holds against the run's tables and subset pickles, the
similarity index against our own embeddings, overwrite and a killed export, tags back into a
subset that SubsetNuScenesDataset trains on, a fresh process, and no network."""

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

from conceptminer3d.subsets import SubsetSpec, subset_membership, subset_names, subset_paths

from helpers import REPO, copy_run_with_subsets

TRAIN = 'nuscenes_infos_train.pkl'
TOOL = os.path.join(REPO, 'tools', 'export_fiftyone.py')


@pytest.fixture(scope='module')
def fo(tmp_path_factory):
    """FiftyOne on a database of its own under a temporary directory (set before its import)."""
    os.environ['FIFTYONE_DATABASE_DIR'] = str(tmp_path_factory.mktemp('fiftyone_db'))
    os.environ['FIFTYONE_DO_NOT_TRACK'] = 'true'
    from conceptminer3d.curation import connect

    return connect()


@pytest.fixture(scope='module')
def run_dir(train_mining, toy_world, tmp_path_factory):
    """The toy mining run with the default subsets built, and their GT databases."""
    return copy_run_with_subsets(train_mining, toy_world[0], str(tmp_path_factory.mktemp('fo_run')))


@pytest.fixture(scope='module')
def exported(fo, run_dir):
    from conceptminer3d.curation import export_mining_run

    summary = export_mining_run(run_dir, 'toy-run', progress=False)
    return summary, fo.load_dataset('toy-run')


def _slices(dataset):
    return dataset.select_group_slices(media_type='image')


def test_every_frame_is_a_slice_of_its_sample_group(exported, run_dir):
    summary, dataset = exported
    frames = pq.read_table(os.path.join(run_dir, 'frames.parquet')).to_pandas()
    frames = frames[frames.status == 'ok']
    assert summary['groups'] == frames.sample_token.nunique() == len(set(_slices(dataset).values('group.id')))
    assert summary['slices'] == frames.camera.value_counts().to_dict()
    assert sorted(dataset.group_slices) == sorted(frames.camera.unique())
    slices = _slices(dataset)
    rows = sorted(zip(slices.values('sample_token'), slices.values('camera'), slices.values('filepath')))
    assert rows == sorted(zip(frames.sample_token, frames.camera, map(os.path.abspath, frames.img_path)))
    # a group's slices are the cameras of one sample token
    for token, cameras in frames.groupby('sample_token').camera:
        group_ids = set(slices.match({'sample_token': token}).values('group.id'))
        assert len(group_ids) == 1 and len(cameras) == len(slices.match({'sample_token': token}))


def test_boxes_carry_the_runs_concepts_groups_outliers_and_captions(exported, run_dir):
    _, dataset = exported
    crops = pq.read_table(os.path.join(run_dir, 'crops.parquet')).to_pandas().set_index('crop_id')
    concepts = pq.read_table(os.path.join(run_dir, 'concepts.parquet')).to_pandas().set_index('crop_id')
    captions = pq.read_table(os.path.join(run_dir, 'captions.parquet')).to_pandas().set_index('crop_id')
    boxes = {
        d.crop_id: d
        for sample in _slices(dataset).iter_samples()
        for d in sample.detections.detections
        if d.crop_id.startswith(f'{sample.sample_token}/{sample.camera}/')
    }
    assert sorted(boxes) == sorted(crops.index)
    assert len(concepts) and len(captions)
    for crop_id, box in boxes.items():
        crop = crops.loc[crop_id]
        assert (box.label, box.confidence) == (crop.yolo_class, pytest.approx(crop.yolo_conf))
        assert box.outlier_score_iforest == pytest.approx(crop.outlier_score_iforest)
        assert (box.is_outlier, box.is_outlier_lof) == (bool(crop.is_outlier), bool(crop.is_outlier_lof))
        if crop_id in concepts.index:
            row = concepts.loc[crop_id]
            assert (box.concept, box.concept_group) == (row.top_concept, row.group)
            assert box.concept_score == pytest.approx(row.top_score)
        else:
            assert box.concept is None and box.concept_group is None
        assert box.caption == (captions.caption.get(crop_id))
    # pixel boxes back from FiftyOne's relative [x, y, w, h]
    frames = pq.read_table(os.path.join(run_dir, 'frames.parquet')).to_pandas().iloc[0]
    some = crops[(crops.sample_token == frames.sample_token) & (crops.camera == frames.camera)]
    for crop_id, crop in some.iterrows():
        x, y, w, h = boxes[crop_id].bounding_box
        assert [x * frames.width, y * frames.height, (x + w) * frames.width, (y + h) * frames.height] == pytest.approx(
            [crop.x1, crop.y1, crop.x2, crop.y2], abs=1e-3
        )


def test_samples_say_which_subsets_hold_them_and_why(exported, run_dir):
    summary, dataset = exported
    names = subset_names(run_dir)
    assert summary['subsets'] == names and len(names) == 3
    slices = _slices(dataset)
    for name in names:
        with open(subset_paths(run_dir, name)[0], 'rb') as f:
            tokens = {info['token'] for info in pickle.load(f)['data_list']}
        held = {t for t, s in zip(slices.values('sample_token'), slices.values('subsets')) if name in s}
        assert held == tokens
        assert len(dataset.load_saved_view(f'subset-{name}').select_group_slices(media_type='image')) == len(
            slices.match({'sample_token': {'$in': sorted(tokens)}})
        )
    mined = SubsetSpec().name
    with open(os.path.join(run_dir, 'subsets', f'subset_manifest_{mined}.json')) as f:
        manifest = {s['sample_token']: s for s in json.load(f)['selected']}
    reasons = {t: (r.get(mined), c.get(mined)) for t, r, c in zip(
        slices.values('sample_token'), slices.values('subset_reasons'), slices.values('slot_concepts')
    ) if t in manifest}  # fmt: skip
    assert reasons == {t: (s['reason'], s.get('concept')) for t, s in manifest.items()}
    assert {r.get(SubsetSpec().baseline_name) for r in slices.values('subset_reasons')} == {None, 'random'}
    assert {r.get(SubsetSpec().coreset_name) for r in slices.values('subset_reasons')} == {None, 'coreset'}
    assert subset_membership(run_dir, mined) == {t: {k: s[k] for k in ('reason', 'concept', 'score') if k in s}
                                                 for t, s in manifest.items()}  # fmt: skip


def test_target_views_hold_the_target_crops_of_their_concept(exported, run_dir):
    summary, dataset = exported
    concepts = pq.read_table(os.path.join(run_dir, 'concepts.parquet')).to_pandas()
    targets = concepts[concepts.group == 'Target']
    assert len(targets), 'the toy run should find Target crops'
    for concept, crops in targets.groupby('top_concept'):
        view = dataset.load_saved_view(f'target-{concept}')  # flattened: every camera
        assert sorted(view.values('detections.detections.crop_id', unwind=True)) == sorted(crops.crop_id)
    assert sorted(v for v in summary['saved_views'] if v.startswith('target-')) == sorted(
        f'target-{c}' for c in targets.top_concept.unique()
    )


def test_sort_by_similarity_ranks_crops_as_our_embeddings_do(exported, run_dir):
    from conceptminer3d.curation.fiftyone_dataset import crops_by_similarity

    _, dataset = exported
    crop_ids = pq.read_table(os.path.join(run_dir, 'crops.parquet'), columns=['crop_id']).column(0).to_pylist()
    embeddings = np.load(os.path.join(run_dir, 'embeddings.npy'))
    targets = pq.read_table(os.path.join(run_dir, 'concepts.parquet')).to_pandas().query('group == "Target"')
    for query in targets.crop_id.iloc[:3]:
        cosine = embeddings @ embeddings[crop_ids.index(query)]
        nearest = [crop_ids[i] for i in np.argsort(-cosine, kind='stable')[:8]]
        assert crops_by_similarity(dataset, query, k=8) == nearest


def test_an_existing_dataset_is_kept_unless_overwritten(fo, exported, run_dir):
    from conceptminer3d.curation import export_mining_run

    summary, dataset = exported
    dataset.select_group_slices(media_type='image').limit(1).tag_samples('kept')
    with pytest.raises(FileExistsError, match='--overwrite'):
        export_mining_run(run_dir, 'toy-run', progress=False)
    assert fo.load_dataset('toy-run').select_group_slices(media_type='image').count_sample_tags() == {'kept': 1}
    again = export_mining_run(run_dir, 'toy-run-copy', progress=False)
    replaced = export_mining_run(run_dir, 'toy-run-copy', overwrite=True, progress=False)
    assert again == replaced == dict(summary, name='toy-run-copy')
    assert len(fo.load_dataset('toy-run-copy').select_group_slices(media_type='image')) == sum(
        summary['slices'].values()
    )
    fo.delete_dataset('toy-run-copy')


def test_a_killed_export_leaves_no_dataset_under_its_name(fo, run_dir):
    from conceptminer3d.curation import export_mining_run

    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, TOOL, run_dir, '--name', 'killed', '--no-progress'],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not fo.list_datasets('killed-partial-*') and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert proc.poll() is None, 'the export ended before it could be killed'
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not fo.dataset_exists('killed')
    assert fo.list_datasets('killed-partial-*')  # left by the dead process, until the next export
    export_mining_run(run_dir, 'killed', progress=False)
    assert fo.dataset_exists('killed') and not fo.list_datasets('killed-partial-*')
    fo.delete_dataset('killed')


def test_tags_come_back_as_a_subset_that_trains(fo, exported, run_dir, toy_world):
    from test_subsets import _object_sample_info_path, _subset_dataset

    from conceptminer3d.curation import import_tagged_subset

    _, dataset = exported
    slices = _slices(dataset)
    tokens = sorted(set(slices.values('sample_token')))
    by_sample = slices.match({'sample_token': {'$in': tokens[:3]}, 'camera': 'CAM_BACK'})
    by_sample.tag_samples('hard_cases')
    boxed = slices.match({'sample_token': tokens[5]})
    boxed.tag_labels('hard_cases', label_fields='detections')
    tagged = set(tokens[:3]) | ({tokens[5]} if boxed.count('detections.detections') else set())

    manifest = import_tagged_subset(run_dir, 'hard_cases', 'toy-run')
    infos, dbinfos = subset_paths(run_dir, 'hard_cases')
    with open(infos, 'rb') as f:
        assert {info['token'] for info in pickle.load(f)['data_list']} == tagged
    assert manifest['num_selected'] == len(tagged) and manifest['reasons'] == {'tagged': len(tagged)}
    with open(dbinfos, 'rb') as f:
        database = pickle.load(f)
    assert {e['image_idx'] for entries in database.values() for e in entries} <= set(range(len(tagged)))
    loaded = _subset_dataset(toy_world, mining_dir=run_dir, subset='hard_cases')
    assert len(loaded) == len(tagged) and _object_sample_info_path(loaded) == dbinfos
    assert subset_membership(run_dir, 'hard_cases') == {t: {'reason': 'tagged'} for t in tagged}

    with pytest.raises(FileExistsError, match='--overwrite'):
        import_tagged_subset(run_dir, 'hard_cases', 'toy-run')
    with pytest.raises(ValueError, match='no sample or box'):
        import_tagged_subset(run_dir, 'nobody_used_this', 'toy-run')
    with pytest.raises(ValueError, match='cannot name a subset file'):
        import_tagged_subset(run_dir, '../escape', 'toy-run')
    os.remove(infos), os.remove(dbinfos), os.remove(os.path.join(run_dir, 'subsets', 'subset_manifest_hard_cases.json'))


def test_bad_inputs_get_one_clear_line(fo, run_dir, tmp_path):
    from conceptminer3d.curation import export_mining_run

    with pytest.raises(FileNotFoundError, match='not a finished mining run'):
        export_mining_run(str(tmp_path), 'nothing', progress=False)
    with pytest.raises(ValueError, match='no subset nope'):
        export_mining_run(run_dir, 'nothing', subsets=['nope'], progress=False)
    out = subprocess.run([sys.executable, TOOL, str(tmp_path)], capture_output=True, text=True)
    assert (
        out.returncode == 2 and out.stderr.strip().startswith('error: ') and len(out.stderr.strip().splitlines()) == 1
    )


def test_export_and_reload_with_only_loopback(run_dir, tmp_path):
    """The tool, then a fresh process reading the dataset back, in a network namespace that has
    only loopback: nothing reaches out. With a database of their own: FiftyOne attaches to any
    database service of the same user it can see (whatever its database_dir), and the module's
    listens in the host's network namespace, so the PID namespace is private too."""
    isolate = ['unshare', '--net', '--pid', '--fork', '--mount-proc']
    if shutil.which('unshare') is None or subprocess.run([*isolate, 'true']).returncode:
        pytest.skip('unshare --net --pid is not permitted here')
    reload = (
        'import fiftyone as fo; d = fo.load_dataset("offline"); '
        'print(len(d.select_group_slices(media_type="image")), d.list_saved_views())'
    )
    script = (
        'ip link set lo up && '
        f'{sys.executable} {TOOL} {run_dir} --name offline --subset {SubsetSpec().name} --no-progress && '
        f"{sys.executable} -c '{reload}'"
    )
    env = dict(os.environ, FIFTYONE_DATABASE_DIR=str(tmp_path / 'db'), FIFTYONE_DO_NOT_TRACK='true')
    env.pop('FIFTYONE_PRIVATE_DATABASE_PORT', None)  # FiftyOne leaves the module's database port here
    out = subprocess.run([*isolate, 'sh', '-c', script], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    frames = pq.read_table(os.path.join(run_dir, 'frames.parquet'), columns=['status']).column(0).to_pylist()
    count, views = out.stdout.strip().splitlines()[-1].split(' ', 1)
    assert int(count) == frames.count('ok')
    assert f'subset-{SubsetSpec().name}' in views
