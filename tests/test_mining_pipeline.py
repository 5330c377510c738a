"""The mining pipeline end to end on the toy world, with tiny real models."""

import ast
import copy
import glob
import importlib
import os
import pickle
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from conceptminer3d.apis import run_mining
from conceptminer3d.mining import MiningPipeline
from conceptminer3d.mining.contracts import MANIFEST_KEYS
from conceptminer3d.mining.models.model_loading import ModelUnavailableError
from conceptminer3d.mining.stages.frames import InfoPickleError
from conceptminer3d.registry import CAPTIONERS, EMBEDDERS
from conceptminer3d.subsets import subset_infos

from helpers import REPO, toy_blip_captioner

CAMERAS = {'CAM_FRONT', 'CAM_FRONT_RIGHT', 'CAM_FRONT_LEFT', 'CAM_BACK', 'CAM_BACK_LEFT', 'CAM_BACK_RIGHT'}
VAL = 'nuscenes_infos_val.pkl'


def _subset_pickle(root, tmp_path, n, edit=None):
    with open(os.path.join(root, VAL), 'rb') as f:
        infos = subset_infos(pickle.load(f), range(n))
    if edit:
        edit(infos['data_list'])
    path = str(tmp_path / 'subset.pkl')
    with open(path, 'wb') as f:
        pickle.dump(infos, f)
    return path


def _read(work_dir, name):
    return pq.read_table(os.path.join(work_dir, name)).to_pandas()


@pytest.fixture(scope='session')
def first_run(toy_world, session_mining_cfg, tmp_path_factory):
    root, _ = toy_world
    work_dir = str(tmp_path_factory.mktemp('mining') / 'work')
    manifest = run_mining(copy.deepcopy(session_mining_cfg), root, VAL, work_dir, progress=False)
    return work_dir, manifest


def test_all_cameras_processed_and_tables_agree(first_run, toy_world):
    work_dir, manifest = first_run
    frames, crops = _read(work_dir, 'frames.parquet'), _read(work_dir, 'crops.parquet')
    captions, concepts = _read(work_dir, 'captions.parquet'), _read(work_dir, 'concepts.parquet')
    embeddings = np.load(os.path.join(work_dir, 'embeddings.npy'))
    with open(os.path.join(toy_world[0], VAL), 'rb') as f:
        samples = {i['token'] for i in pickle.load(f)['data_list']}
    assert set(frames.camera) == CAMERAS and len(frames) == 6 * len(samples)
    assert set(frames.sample_token) == samples and (frames.scene_token != '').all()
    assert frames.num_crops.sum() == len(crops) == len(embeddings) > 0
    assert crops.crop_id.is_unique
    frame_position = {(r.sample_token, r.camera): i for i, r in enumerate(frames.itertuples())}
    order = [(frame_position[(c.sample_token, c.camera)], c.crop_index) for c in crops.itertuples()]
    assert order == sorted(order), 'crops come in the order of their frames'
    assert (frames.num_crops.values == np.bincount([i for i, _ in order], minlength=len(frames))).all()
    assert list(captions.crop_id) == list(crops.crop_id[crops.caption_selected])
    assert list(concepts.crop_id) == list(captions.crop_id)
    assert not glob.glob(os.path.join(work_dir, 'caption_embeddings*')), 'the scoring scratch file is removed'
    assert manifest['counts']['crops'] == len(crops) and manifest['counts']['captions'] == len(captions)
    assert manifest['torch_threads'] == os.cpu_count()
    assert (
        list(manifest)[: len(MANIFEST_KEYS)] == list(MANIFEST_KEYS) and manifest['concept_source'] == 'MiningPipeline'
    )
    # Every stage ran on something (the timings themselves belong to tools/benchmark_mining.py).
    assert {stage: manifest['stages'][stage]['items'] for stage in ('detect', 'embed', 'outliers', 'caption')} == dict(
        detect=len(frames), embed=len(crops), outliers=len(crops), caption=len(captions)
    )
    assert manifest['stages']['concepts']['items'] == len(concepts) > 0


def test_embeddings_are_normalised_and_row_aligned(first_run, mining_cfg):
    work_dir, _ = first_run
    crops, frames = _read(work_dir, 'crops.parquet'), _read(work_dir, 'frames.parquet')
    embeddings = np.load(os.path.join(work_dir, 'embeddings.npy'))
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    path_of = {(r.sample_token, r.camera): r.img_path for r in frames.itertuples()}
    rows = [0, len(crops) // 2, len(crops) - 1]
    images, boxes = [], []
    for i in rows:
        c = crops.iloc[i]
        images.append(np.array(Image.open(path_of[(c.sample_token, c.camera)]).convert('RGB')))
        boxes.append((c.crop_x1, c.crop_y1, c.crop_x2, c.crop_y2))
    embedder = EMBEDDERS.build(mining_cfg.embedder)
    again = embedder.encode_regions(images, list(enumerate(boxes)))
    np.testing.assert_allclose(again, embeddings[rows], atol=1e-5)
    # Cut and resized as tensors, the crops embed as open_clip's own PIL transform has them.
    with_pil = embedder.encode_images([Image.fromarray(a).crop(b) for a, b in zip(images, boxes)])
    assert (with_pil * embeddings[rows]).sum(axis=1).min() > 0.999


def test_outlier_flags_match_contamination(first_run, mining_cfg):
    work_dir, _ = first_run
    crops = _read(work_dir, 'crops.parquet')
    expected = mining_cfg.outliers.contamination * len(crops)
    for method in ('iforest', 'lof', 'knn'):
        assert abs(crops[f'is_outlier_{method}'].sum() - expected) <= 1, method
        # flagged crops are the highest-scoring ones
        flagged = crops[f'outlier_score_{method}'][crops[f'is_outlier_{method}']]
        assert flagged.min() >= crops[f'outlier_score_{method}'][~crops[f'is_outlier_{method}']].max()
    union = crops.is_outlier_iforest | crops.is_outlier_lof | crops.is_outlier_knn
    assert (crops.is_outlier == union).all()


def test_groups_follow_the_vocabulary_lists(first_run, mining_cfg):
    work_dir, _ = first_run
    concepts = _read(work_dir, 'concepts.parquet')
    vocab = mining_cfg.concepts.vocabulary
    assert len(concepts) > 0
    for row in concepts.itertuples():
        expected = (
            'Target' if row.top_concept in vocab.target else 'Rare' if row.top_concept not in vocab.common else 'Common'
        )
        assert row.group == expected
        assert row.top_concept == row.top_concepts[0] and len(row.top_concepts) == 5
        assert list(row.top_scores) == sorted(row.top_scores, reverse=True)


def test_rerun_with_new_vocabulary_reuses_detections_embeddings_and_captions(
    first_run, toy_world, mining_cfg, tmp_path
):
    root, _ = toy_world
    work_dir = str(tmp_path / 'work')
    shutil.copytree(first_run[0], work_dir)
    cfg = mining_cfg
    cfg.concepts.vocabulary = dict(
        concepts=['car', 'excavator', 'stroller', 'pedestrian'], target=['excavator'], common=['car', 'pedestrian']
    )
    pipeline = MiningPipeline(cfg, root, VAL, work_dir, progress=False)
    manifest = pipeline.run()
    assert manifest['cache']['detect_embed']['computed_frames'] == 0
    assert manifest['cache']['captions']['computed_crops'] == 0
    assert pipeline._detector is None and pipeline._captioner is None, 'no model was even loaded'
    concepts = _read(work_dir, 'concepts.parquet')
    assert set(concepts.top_concept) <= {'car', 'excavator', 'stroller', 'pedestrian'}
    assert manifest['counts']['captions'] == first_run[1]['counts']['captions']


def test_rerun_with_other_batch_sizes_and_model_paths_recomputes_nothing(first_run, toy_world, mining_cfg, tmp_path):
    """Caches are keyed by what results depend on: batch sizes, the device and where the same
    weights lie do not count."""
    root, _ = toy_world
    work_dir = str(tmp_path / 'work')
    shutil.copytree(first_run[0], work_dir)
    models = os.path.dirname(mining_cfg.detector.model)
    moved = shutil.copytree(models, tmp_path / 'moved_models')
    cfg = mining_cfg
    cfg.frame_batch_size = 2 * cfg.frame_batch_size
    cfg.detector.update(model=os.path.relpath(moved / os.path.basename(cfg.detector.model)), batch_size=16)
    cfg.embedder.update(model_name=str(moved / os.path.basename(cfg.embedder.model_name)), batch_size=5, device='cpu')
    cfg.captioner.update(model=str(moved / os.path.basename(cfg.captioner.model)) + '/', batch_size=3, device='auto')
    pipeline = MiningPipeline(cfg, root, VAL, work_dir, progress=False)
    manifest = pipeline.run()
    assert manifest['cache']['detect_embed'] == dict(
        first_run[1]['cache']['detect_embed'], reused_frames=manifest['counts']['frames'], computed_frames=0
    )
    assert manifest['cache']['captions']['computed_crops'] == 0
    assert manifest['cache']['captions']['key'] == first_run[1]['cache']['captions']['key']
    assert pipeline._detector is None and pipeline._captioner is None
    for name in ('frames.parquet', 'crops.parquet', 'captions.parquet'):
        assert _read(work_dir, name).equals(_read(first_run[0], name)), name
    # The concept prompts are embedded anew, in batches of 5 instead of 64: equal up to rounding.
    concepts, before = _read(work_dir, 'concepts.parquet'), _read(first_run[0], 'concepts.parquet')
    assert concepts.crop_id.equals(before.crop_id) and concepts.group.equals(before.group)
    np.testing.assert_allclose(concepts.top_score, before.top_score, atol=1e-5)
    assert np.array_equal(
        np.load(os.path.join(work_dir, 'embeddings.npy')), np.load(os.path.join(first_run[0], 'embeddings.npy'))
    )


def test_a_changed_image_is_recomputed_alone(first_run, toy_world, mining_cfg, tmp_path):
    root, _ = toy_world
    work_dir = str(tmp_path / 'work')
    shutil.copytree(first_run[0], work_dir)
    with open(os.path.join(root, VAL), 'rb') as f:
        original = pickle.load(f)['data_list'][0]['images']['CAM_FRONT']['img_path']
    changed = os.path.join(root, 'samples', 'CAM_FRONT', 'reencoded_for_test.jpg')
    Image.open(os.path.join(root, 'samples', 'CAM_FRONT', original)).save(changed, quality=60)

    def point_at_the_changed_image(data_list):
        data_list[0]['images']['CAM_FRONT']['img_path'] = os.path.basename(changed)

    ann = _subset_pickle(root, tmp_path, 3, point_at_the_changed_image)
    manifest = MiningPipeline(mining_cfg, root, ann, work_dir, progress=False).run()
    assert manifest['cache']['detect_embed']['reused_frames'] == 17
    assert manifest['cache']['detect_embed']['computed_frames'] == 1
    frames = _read(work_dir, 'frames.parquet')
    assert frames.img_path.iloc[0] == changed and len(frames) == 18


def test_interrupted_run_resumes_without_redoing_finished_batches(
    first_run, toy_world, mining_cfg, tmp_path, monkeypatch
):
    from conceptminer3d.mining import pipeline as pipeline_module

    root, _ = toy_world
    work_dir = str(tmp_path / 'work')
    pipeline = MiningPipeline(mining_cfg, root, VAL, work_dir, progress=False)
    original, calls = pipeline_module.detect_and_embed_batch, []

    def killed_after_two_batches(*args):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(1)
        return original(*args)

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(pipeline_module, 'detect_and_embed_batch', killed_after_two_batches)
        pipeline.run()
    assert not os.path.exists(os.path.join(work_dir, 'crops.parquet')), 'no partial outputs'
    manifest = MiningPipeline(mining_cfg, root, VAL, work_dir, progress=False).run()
    total = first_run[1]['cache']['detect_embed']['computed_frames']
    finished = 2 * mining_cfg.frame_batch_size
    assert manifest['cache']['detect_embed'] == dict(
        key=first_run[1]['cache']['detect_embed']['key'], reused_frames=finished, computed_frames=total - finished
    )
    np.testing.assert_allclose(
        np.load(os.path.join(work_dir, 'embeddings.npy')),
        np.load(os.path.join(first_run[0], 'embeddings.npy')),
        atol=1e-5,
    )
    assert _read(work_dir, 'crops.parquet').crop_id.tolist() == _read(first_run[0], 'crops.parquet').crop_id.tolist()


# Run in a child process: mining as the config says, except that the process SIGKILLs itself
# at one point (nothing is cleaned up, as after a crash or an OOM kill).
_KILLED_RUN = """
import os, signal, sys
from mmengine.config import Config
from conceptminer3d.apis import run_mining
from conceptminer3d.mining.runtime import assembly, cache

stage, after = sys.argv[4], int(sys.argv[5])
calls = []
if stage == 'tables':
    write = assembly.write_table_atomic
    def write_then_die(table, path):
        if path.endswith('crops.parquet'):  # frames.parquet is written, the rest is not
            os.kill(os.getpid(), signal.SIGKILL)
        write(table, path)
    assembly.write_table_atomic = write_then_die
else:
    save = cache.ItemCache.save_items
    def save_then_die(self, *args, **kwargs):
        if os.path.basename(os.path.dirname(self.dir)) == stage:
            if len(calls) == after:
                os.kill(os.getpid(), signal.SIGKILL)
            calls.append(1)
        save(self, *args, **kwargs)
    cache.ItemCache.save_items = save_then_die
run_mining(Config.fromfile(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[6], progress=False)
"""


@pytest.mark.parametrize('stage, after', [('detect_embed', 2), ('captions', 1), ('tables', 0)])
def test_sigkilled_run_resumes_to_the_same_outputs(first_run, toy_world, mining_cfg, tmp_path, stage, after):
    """Killed (SIGKILL) during detection, during captioning, or while the final tables are
    written: the re-run's outputs equal an uninterrupted run's, and no finished batch is
    computed again."""
    import signal
    import subprocess
    import sys

    root, _ = toy_world
    work_dir = str(tmp_path / 'work')
    config = str(tmp_path / 'mining_cfg.py')
    mining_cfg.dump(config)
    child = subprocess.run(
        [sys.executable, '-c', _KILLED_RUN, config, root, VAL, stage, str(after), work_dir],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    assert not os.path.exists(os.path.join(work_dir, 'manifest.json'))
    manifest = run_mining(mining_cfg, root, VAL, work_dir, progress=False)
    assert not glob.glob(os.path.join(work_dir, '*.tmp-*')), 'what the killed writer left is gone'
    frames = manifest['counts']['frames']
    finished_frames = {'detect_embed': after * mining_cfg.frame_batch_size}.get(stage, frames)
    assert manifest['cache']['detect_embed']['reused_frames'] == finished_frames
    assert manifest['cache']['detect_embed']['computed_frames'] == frames - finished_frames
    captions = manifest['counts']['captions']
    if stage == 'captions':
        batch_size = CAPTIONERS.get(mining_cfg.captioner.type).default_batch_size['cpu']
        assert manifest['cache']['captions']['reused_crops'] == after * batch_size
    if stage == 'tables':
        assert manifest['cache']['captions'] == dict(
            manifest['cache']['captions'], reused_crops=captions, computed_crops=0
        )
    for name in ('frames.parquet', 'crops.parquet', 'captions.parquet', 'concepts.parquet'):
        assert _read(work_dir, name).equals(_read(first_run[0], name)), name
    assert np.array_equal(
        np.load(os.path.join(work_dir, 'embeddings.npy')), np.load(os.path.join(first_run[0], 'embeddings.npy'))
    )


def test_missing_and_corrupt_images_are_counted_skips(toy_world, mining_cfg, tmp_path):
    root, _ = toy_world
    corrupt = os.path.join(root, 'samples', 'CAM_BACK', 'corrupt_for_test.jpg')
    with open(corrupt, 'wb') as f:
        f.write(b'\xff\xd8\xff\xe0 not really a jpeg')

    def break_two_images(data_list):
        data_list[0]['images']['CAM_FRONT']['img_path'] = 'does_not_exist.jpg'
        data_list[1]['images']['CAM_BACK']['img_path'] = 'corrupt_for_test.jpg'

    ann = _subset_pickle(root, tmp_path, 3, break_two_images)
    work_dir = str(tmp_path / 'work')
    manifest = run_mining(mining_cfg, root, ann, work_dir, progress=False)
    assert manifest['skips']['images_missing'] == 1 and manifest['skips']['images_corrupt'] == 1
    frames = _read(work_dir, 'frames.parquet')
    assert len(frames) == 18 and sorted(frames.status.unique()) == ['corrupt', 'missing', 'ok']
    crops = _read(work_dir, 'crops.parquet')
    bad = frames[frames.status != 'ok'][['sample_token', 'camera']].apply(tuple, axis=1).tolist()
    assert not set(crops[['sample_token', 'camera']].apply(tuple, axis=1)) & set(bad)
    assert len(crops) == len(np.load(os.path.join(work_dir, 'embeddings.npy'))) == frames.num_crops.sum()


@pytest.mark.parametrize(
    'options, skip, skipped',
    [
        (dict(detector=dict(conf=0.999)), 'frames_without_detections', 'frames'),
        (dict(crops=dict(min_size=10_000)), 'crops_too_small', 'detections'),
    ],
)
def test_frames_without_crops_finish_with_empty_tables(toy_world, mining_cfg, tmp_path, options, skip, skipped):
    """A conf no box reaches skips every frame; a min_size no crop reaches, every detection."""
    root, _ = toy_world
    cfg = mining_cfg
    cfg.merge_from_dict(options)
    ann = _subset_pickle(root, tmp_path, 2)
    manifest = run_mining(cfg, root, ann, str(tmp_path / 'work'), progress=False)
    assert manifest['counts']['crops'] == 0 and manifest['counts']['concepts'] == 0
    assert manifest['skips'][skip] == manifest['counts'][skipped] > 0


@pytest.mark.parametrize(
    'options, error, match',
    [
        (dict(concepts=dict(vocabulary=dict(concepts=[], target=[], common=[]))), ValueError, 'empty'),
        (dict(outliers=dict(contamination=0.7)), ValueError, 'contamination'),  # every bad value: test_outliers.py
        (dict(outliers=dict(combine='majority')), ValueError, 'combine'),
    ],
)
def test_bad_config_fails_before_any_work(toy_world, mining_cfg, tmp_path, options, error, match):
    cfg = mining_cfg
    cfg.merge_from_dict(options)
    with pytest.raises(error, match=match):
        run_mining(cfg, toy_world[0], VAL, str(tmp_path / 'work'), progress=False)
    assert not os.path.exists(tmp_path / 'work' / 'cache')


def test_bad_inputs_fail_before_any_work(toy_world, mining_cfg, tmp_path):
    root, _ = toy_world
    not_v2 = tmp_path / 'old.pkl'
    with open(not_v2, 'wb') as f:
        pickle.dump({'infos': [], 'metadata': {}}, f)
    with pytest.raises(InfoPickleError, match='data_list'):
        run_mining(mining_cfg, root, str(not_v2), str(tmp_path / 'w1'), progress=False)
    garbage = tmp_path / 'garbage.pkl'
    garbage.write_bytes(b'not a pickle')
    with pytest.raises(InfoPickleError, match='cannot read'):
        run_mining(mining_cfg, root, str(garbage), str(tmp_path / 'w2'), progress=False)
    with pytest.raises(FileNotFoundError, match='data root'):
        run_mining(mining_cfg, str(tmp_path / 'nowhere'), VAL, str(tmp_path / 'w3'), progress=False)


def test_unavailable_real_models_stop_before_any_work(toy_world, tmp_path):
    """The default config names real models that are not on this machine: one clear error,
    naming the model and how to provide it, before the first image is read."""
    with pytest.raises(ModelUnavailableError) as err:
        run_mining(
            os.path.join(REPO, 'configs', 'mining', 'default.py'),
            toy_world[0],
            VAL,
            str(tmp_path / 'work'),
            progress=False,
        )
    assert 'yolov8l.pt' in str(err.value)
    assert not os.path.exists(tmp_path / 'work' / 'cache')


def test_per_class_outliers_and_blip_captions(toy_world, toy_models, mining_cfg, tmp_path):
    """Options: one outlier model per YOLO class, and BLIP instead of Qwen2-VL."""
    root, _ = toy_world
    mining_cfg.outliers.per_class = True
    mining_cfg.outliers.min_crops = 5
    mining_cfg.captioner = toy_blip_captioner(toy_models, max_new_tokens=6)
    ann = _subset_pickle(root, tmp_path, 4)
    work_dir = str(tmp_path / 'work')
    manifest = run_mining(mining_cfg, root, ann, work_dir, progress=False)
    crops = _read(work_dir, 'crops.parquet')
    sizes = crops.groupby('yolo_class').size()
    big, small = sizes.index[sizes >= 5], sizes.index[sizes < 5]
    # The toy world gives both kinds of class; without both, half of this test checks nothing.
    assert len(big) and len(small)
    for cls in big:  # each class big enough gets its own model and its own share of outliers
        group = crops[crops.yolo_class == cls]
        assert abs(group.is_outlier_knn.sum() - 0.1 * len(group)) <= 1, cls
    unscored = crops[crops.yolo_class.isin(small)]
    assert not unscored.is_outlier.any() and (unscored.outlier_score_knn == 0).all()
    assert manifest['skips']['outlier_groups_too_small'] == len(small)
    captions = _read(work_dir, 'captions.parquet')
    assert len(captions) == crops.caption_selected.sum() and manifest['config']['captioner']['type'] == 'BlipCaptioner'


# Imports run downward: entry points (apis) and fixtures above the stages, stages above contracts.
ABOVE_THE_STAGES = (
    'conceptminer3d.apis',
    'conceptminer3d.hooks',
    'conceptminer3d.metrics',
    'conceptminer3d.launch',
    'conceptminer3d.report',
    'conceptminer3d.search',
    'conceptminer3d.curation',
    'conceptminer3d_toy',
    'conceptminer3d_benchmarks',
)


def _package_imports(package):
    """(module, imported module, imported at module level?) for every import in ``package`` and
    every package below it."""
    directory = os.path.dirname(importlib.import_module(package).__file__)
    for path in sorted(glob.glob(os.path.join(directory, '**', '*.py'), recursive=True)):
        parts = os.path.relpath(path, directory)[:-3].split(os.sep)
        is_package = parts[-1] == '__init__'
        module = '.'.join([package, *(parts[:-1] if is_package else parts)])
        here = module if is_package else module.rsplit('.', 1)[0]  # what a relative import starts from
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.rsplit('.', node.level - 1)[0] if node.level > 1 else here
                    base = f'{base}.{node.module}' if node.module else base
                    # `from . import x` names a module x, or a name defined in the package
                    targets = [base] if node.module else [f'{base}.{alias.name}' for alias in node.names]
                else:
                    targets = [node.module]
            else:
                continue
            for target in targets:
                yield module, target, node in tree.body


def test_the_import_walk_reads_subfolders_and_resolves_relative_imports():
    imports = {(m, t) for m, t, _ in _package_imports('conceptminer3d.mining')}
    assert ('conceptminer3d.mining.stages.detection', 'conceptminer3d.registry') in imports
    assert ('conceptminer3d.mining.stages.detection', 'conceptminer3d.mining.models.devices') in imports
    assert ('conceptminer3d.mining.runtime.cache', 'conceptminer3d.mining.runtime.hashing') in imports


# The layers of conceptminer3d.mining, lowest first (its package docstring): a module imports
# only from its own layer or those below.
MINING_LAYERS = (
    ('contracts',),
    ('runtime',),
    ('models',),
    ('stages', 'outliers'),
    ('pipeline', 'annotations', 'fingerprint', ''),  # '': the package's __init__
)


def _mining_layer(module: str) -> int:
    rest = module[len('conceptminer3d.mining') :].lstrip('.').split('.')[0]
    (layer,) = [i for i, names in enumerate(MINING_LAYERS) if rest in names]
    return layer


@pytest.mark.parametrize('outside', ['conceptminer3d_toy', 'conceptminer3d_benchmarks'])
def test_the_product_never_imports_the_toy_fixtures_or_the_speed_benchmarks(outside):
    imports = list(_package_imports('conceptminer3d'))
    assert len({module for module, _, _ in imports}) > 70, 'every module of the package, subfolders included'
    found = [(m, t) for m, t, _ in imports if t == outside or t.startswith(outside + '.')]
    assert not found, found
    assert any(t.startswith('conceptminer3d.') for _, t, _ in _package_imports(outside))


def test_mining_modules_import_only_from_the_layers_below():
    checked = 0
    for module, target, module_level in _package_imports('conceptminer3d.mining'):
        if not (target == 'conceptminer3d.mining' or target.startswith('conceptminer3d.mining.')):
            continue
        checked += 1
        assert _mining_layer(target) <= _mining_layer(module), f'{module} imports {target}, a layer above it'
        assert module_level, f'{module} imports {target} inside a function'
    assert checked > 40


@pytest.mark.parametrize(
    'package, forbidden',
    [
        ('conceptminer3d.mining', ABOVE_THE_STAGES + ('conceptminer3d.subsets',)),
        ('conceptminer3d.subsets', ABOVE_THE_STAGES),
        ('conceptminer3d.report', tuple(p for p in ABOVE_THE_STAGES if p != 'conceptminer3d.report')),
        # search sits beside curation: it reads runs (mining), writes subsets and borrows the
        # report's thumbnails; nothing else imports it
        (
            'conceptminer3d.search',
            tuple(p for p in ABOVE_THE_STAGES if p not in ('conceptminer3d.report', 'conceptminer3d.search')),
        ),
    ],
)
def test_imports_run_downward(package, forbidden):
    imports = list(_package_imports(package))
    assert any(target.startswith('conceptminer3d.') for _, target, _ in imports)
    for module, target, module_level in imports:
        assert not target.startswith(forbidden), f'{module} imports {target}, which is above it'
        if target.startswith('conceptminer3d'):
            # An import moved into a function hides a cycle instead of removing it.
            assert module_level, f'{module} imports {target} inside a function'
