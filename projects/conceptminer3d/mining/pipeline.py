"""The mining pipeline: info pickle → frames → 2D boxes → crops → embeddings → outliers →
captions → concept groups, each stage a config-built component.

Per-image stages (detection, embedding, captioning) are independent per batch of frames
and cached per batch, so a killed run resumes and a re-run with only a new vocabulary or
threshold reuses them. Global stages (outliers, concepts) are pure functions of the
gathered tables and always recomputed: they take seconds.
"""
from __future__ import annotations

import logging
import os
import platform
import time
from collections import Counter, defaultdict
from typing import Dict, List, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from mmengine.config import Config, ConfigDict
from tqdm import tqdm

from ..registry import CAPTIONERS, DETECTORS_2D, EMBEDDERS, FRAME_SOURCES, OUTLIER_DETECTORS, build_component
from .cache import StageCache
from .concepts import ConceptVocabulary, assign_groups, score_concepts, top_k, validate_text_weight
from .contracts import (CAPTION_SCHEMA, CAPTIONS_FILE, CONCEPT_SCHEMA, CONCEPTS_FILE, CROP_SCHEMA, CROPS_FILE,
                        EMBEDDINGS_FILE, FRAME_SCHEMA, FRAME_STATUS_OK, FRAMES_FILE, MANIFEST_FILE,
                        concat_tables, crop_id, rows_to_table, write_json_atomic, write_npy_atomic,
                        write_table_atomic)
from .frames import Frame
from .images import decode_image, padded_crop_box, prefetched
from .model_loading import check_available
from .outliers import combine_outlier_flags

logger = logging.getLogger('conceptminer3d.mining')


class StageTimer:
    """Wall time and item counts per stage; model time separately, to measure overhead."""

    def __init__(self):
        self.stages: Dict[str, Dict[str, float]] = defaultdict(lambda: dict(seconds=0.0, items=0))

    def add(self, stage: str, seconds: float, items: int) -> None:
        self.stages[stage]['seconds'] += seconds
        self.stages[stage]['items'] += items

    def report(self) -> Dict[str, Dict[str, float]]:
        return {name: dict(seconds=round(s['seconds'], 4), items=int(s['items']),
                           items_per_s=round(s['items'] / s['seconds'], 2) if s['seconds'] > 0 else None)
                for name, s in self.stages.items()}


def _versions() -> Dict[str, str]:
    import importlib.metadata as md
    out = {'python': platform.python_version()}
    for name in ('conceptminer3d', 'torch', 'ultralytics', 'open_clip_torch', 'transformers', 'scikit-learn',
                 'numpy', 'pyarrow', 'mmdet3d'):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = 'not installed'
    return out


def _plain(cfg) -> dict:
    return cfg.to_dict() if isinstance(cfg, (Config, ConfigDict)) else dict(cfg)


class MiningPipeline:
    """Runs every stage for one (data_root, ann_file) and writes the tables to ``work_dir``."""

    def __init__(self, cfg: Config, data_root: str, ann_file: str, work_dir: str, progress: bool = True):
        self.cfg = cfg
        self.data_root, self.ann_file, self.work_dir = data_root, ann_file, work_dir
        self.progress = progress
        self.timer = StageTimer()
        self.skips: Counter = Counter()
        self.cache_stats: Dict[str, Dict[str, int]] = {}
        # Everything that can be wrong with the configuration fails here, before any work.
        self.vocabulary = ConceptVocabulary(**_plain(cfg.concepts.vocabulary))
        self.weight_text = cfg.concepts.get('weight_text', 'adaptive')
        validate_text_weight(self.weight_text)
        self.outlier_detectors = {}
        for method in cfg.outliers.methods:
            method = _plain(method)
            name = method.pop('name', method['type'])
            method.setdefault('contamination', cfg.outliers.contamination)
            self.outlier_detectors[name] = build_component(OUTLIER_DETECTORS, method)
        if cfg.outliers.combine not in ('union', 'vote'):
            raise ValueError(f"outliers.combine must be 'union' or 'vote', got {cfg.outliers.combine!r}")
        self.frame_source = build_component(FRAME_SOURCES, cfg.frames)
        self._detector = self._embedder = self._captioner = None

    # -- models, built only when a stage actually has work --------------------------------
    @property
    def detector(self):
        if self._detector is None:
            self._detector = build_component(DETECTORS_2D, self.cfg.detector)
        return self._detector

    @property
    def embedder(self):
        if self._embedder is None:
            self._embedder = build_component(EMBEDDERS, self.cfg.embedder)
        return self._embedder

    @property
    def captioner(self):
        if self._captioner is None:
            self._captioner = build_component(CAPTIONERS, self.cfg.captioner)
        return self._captioner

    def _check_models_available(self) -> None:
        """Every model must load offline before the first image is touched."""
        for registry, component in ((DETECTORS_2D, self.cfg.detector), (EMBEDDERS, self.cfg.embedder),
                                    (CAPTIONERS, self.cfg.captioner)):
            check_available(registry, _plain(component))

    def _set_threads(self) -> int:
        threads = int(self.cfg.get('num_threads') or os.cpu_count() or 1)
        torch.set_num_threads(threads)
        return threads

    # -- stage 2+3: detection, crops and embeddings, per batch of frames ------------------
    @staticmethod
    def _file_identity(frame: Frame) -> tuple:
        if frame.status != FRAME_STATUS_OK:
            return frame.frame_id, frame.img_path, frame.status
        stat = os.stat(frame.img_path)
        return frame.frame_id, frame.img_path, stat.st_size, stat.st_mtime_ns

    def _detection_payload(self, frames: Sequence[Frame]) -> dict:
        return dict(frames=[self._file_identity(f) for f in frames], detector=_plain(self.cfg.detector),
                    embedder=_plain(self.cfg.embedder), crops=_plain(self.cfg.crops),
                    frame_batch_size=self.cfg.frame_batch_size)

    def _process_batch(self, frames: Sequence[Frame], decoded) -> tuple:
        crops_cfg = self.cfg.crops
        keep_classes = set(crops_cfg.get('yolo_classes') or [])
        images = [img for img, _ in decoded if img is not None]
        start = time.perf_counter()
        detections = self.detector.detect([np.asarray(img) for img in images]) if images else []
        self.timer.add('detect', time.perf_counter() - start, len(images))
        names = self.detector.class_names
        frame_rows, crop_rows, crop_images = [], [], []
        det_iter = iter(detections)
        for frame, (image, status) in zip(frames, decoded):
            row = dict(frame_id=frame.frame_id, sample_token=frame.sample_token, scene_token=frame.scene_token,
                       sample_idx=frame.sample_idx, camera=frame.camera, img_path=frame.img_path,
                       timestamp=frame.timestamp, width=0, height=0, status=status, num_detections=0,
                       num_filtered=0, num_too_small=0, num_crops=0)
            frame_rows.append(row)
            if image is None:
                logger.warning('skipping %s image %s', status, frame.img_path)
                continue
            det = next(det_iter)
            row.update(width=image.width, height=image.height, num_detections=len(det.scores))
            order = np.argsort(-det.scores, kind='stable')
            for crop_index, k in enumerate(order):
                label = int(det.labels[k])
                cls_name = str(names.get(label, label))
                if keep_classes and cls_name not in keep_classes:
                    row['num_filtered'] += 1
                    continue
                box = padded_crop_box(det.boxes_xyxy[k], crops_cfg.padding, image.width, image.height)
                if min(box[2] - box[0], box[3] - box[1]) < crops_cfg.min_size:
                    row['num_too_small'] += 1
                    continue
                x1, y1, x2, y2 = (float(v) for v in det.boxes_xyxy[k])
                crop_rows.append(dict(
                    crop_id=crop_id(frame.sample_token, frame.camera, crop_index), sample_token=frame.sample_token,
                    scene_token=frame.scene_token, camera=frame.camera, crop_index=crop_index,
                    x1=x1, y1=y1, x2=x2, y2=y2, crop_x1=box[0], crop_y1=box[1], crop_x2=box[2], crop_y2=box[3],
                    yolo_label=label, yolo_class=cls_name, yolo_conf=float(det.scores[k])))
                crop_images.append(image.crop(box))
                row['num_crops'] += 1
        start = time.perf_counter()
        embeddings = (self.embedder.encode_images(crop_images) if crop_images
                      else np.zeros((0, self.embedder.embedding_dim), np.float32))
        self.timer.add('embed', time.perf_counter() - start, len(crop_images))
        return (rows_to_table(frame_rows, FRAME_SCHEMA), rows_to_table(crop_rows, CROP_SCHEMA),
                np.asarray(embeddings, dtype=np.float32))

    def detect_and_embed(self, frames: List[Frame]):
        batch_size = int(self.cfg.frame_batch_size)
        batches = [frames[i:i + batch_size] for i in range(0, len(frames), batch_size)]
        cache = StageCache(os.path.join(self.work_dir, 'cache'), 'detect_embed', self._detection_payload(frames))
        todo = [i for i in range(len(batches)) if not cache.has(i)]
        self.cache_stats['detect_embed'] = dict(key=cache.key, reused_batches=len(batches) - len(todo),
                                                computed_batches=len(todo))
        if todo:
            self.detector  # noqa: B018  (ultralytics lowers torch's thread count when it loads)
            self.threads = self._set_threads()
        start = time.perf_counter()
        bar = tqdm(total=len(frames), desc='detect + embed', unit='img', disable=not self.progress)
        bar.update(len(frames) - sum(len(batches[i]) for i in todo))
        for i, decoded in zip(todo, prefetched([batches[i] for i in todo])):
            frame_table, crop_table, embeddings = self._process_batch(batches[i], decoded)
            cache.save(i, dict(frames=frame_table, crops=crop_table), embeddings)
            bar.update(len(batches[i]))
        bar.close()
        if todo:
            self.timer.add('detect_embed_total', time.perf_counter() - start, sum(len(batches[i]) for i in todo))
        frame_tables, crop_tables, arrays = [], [], []
        for i in range(len(batches)):
            tables, array = cache.load(i, ('frames', 'crops'))
            frame_tables.append(tables['frames'])
            crop_tables.append(tables['crops'])
            arrays.append(array)
        frames_table = concat_tables(frame_tables, FRAME_SCHEMA)
        self._count_skips(frames_table)
        dim = next((a.shape[1] for a in arrays if a is not None and a.ndim == 2), 0)
        embeddings = np.concatenate([a for a in arrays if a is not None and len(a)] or [np.zeros((0, dim))])
        return frames_table, concat_tables(crop_tables, CROP_SCHEMA), embeddings.astype(np.float32), cache.key

    def _count_skips(self, frames: pa.Table) -> None:
        """Skips are derived from the frames table, so a resumed or cached run reports the same."""
        rows = frames.to_pylist()
        for status, n in Counter(r['status'] for r in rows).items():
            if status != FRAME_STATUS_OK:
                self.skips[f'images_{status}'] = n
        self.skips['frames_without_detections'] = sum(r['status'] == FRAME_STATUS_OK and not r['num_detections']
                                                      for r in rows)
        self.skips['crops_too_small'] = sum(r['num_too_small'] for r in rows)
        self.skips['crops_filtered_by_class'] = sum(r['num_filtered'] for r in rows)

    # -- stage 4: outliers (global) ---------------------------------------------------------
    def find_outliers(self, crops: pa.Table, embeddings: np.ndarray) -> pa.Table:
        start = time.perf_counter()
        n = len(embeddings)
        scores = {name: np.zeros(n, np.float32) for name in self.outlier_detectors}
        flags = {name: np.zeros(n, bool) for name in self.outlier_detectors}
        groups = {'all': np.arange(n)}
        if self.cfg.outliers.get('per_class', False):
            classes = np.asarray(crops.column('yolo_class').to_pylist())
            groups = {c: np.flatnonzero(classes == c) for c in sorted(set(classes))}
        min_crops = int(self.cfg.outliers.get('min_crops', 10))
        for group, idx in groups.items():
            if len(idx) < min_crops:
                self.skips['outlier_groups_too_small'] += 1
                logger.warning('outliers: %d crops in group %r, fewer than min_crops=%d; not scored',
                               len(idx), group, min_crops)
                continue
            for name, detector in self.outlier_detectors.items():
                detector.fit(embeddings[idx])
                scores[name][idx] = -detector.score_samples(embeddings[idx])  # higher = more unusual
                flags[name][idx] = detector.predict(embeddings[idx]) == -1
        combined = (combine_outlier_flags(flags, rule=self.cfg.outliers.combine) if n
                    else np.zeros(0, bool))
        for name in self.outlier_detectors:
            crops = crops.append_column(f'outlier_score_{name}', pa.array(scores[name], pa.float32()))
            crops = crops.append_column(f'is_outlier_{name}', pa.array(flags[name]))
        crops = crops.append_column('is_outlier', pa.array(combined, pa.bool_()))
        select = self.cfg.caption_selection
        by_class = np.isin(np.asarray(crops.column('yolo_class').to_pylist(), dtype=object),
                           list(select.get('yolo_classes') or []))
        selected = (combined if select.get('outliers', True) else np.zeros(n, bool)) | by_class
        crops = crops.append_column('caption_selected', pa.array(selected, pa.bool_()))
        self.timer.add('outliers', time.perf_counter() - start, n)
        return crops

    # -- stage 5: captions for the selected crops ------------------------------------------
    def caption(self, crops: pa.Table, detection_key: str) -> tuple:
        cache = StageCache(os.path.join(self.work_dir, 'cache'), 'captions',
                           dict(detection=detection_key, captioner=_plain(self.cfg.captioner),
                                embedder=_plain(self.cfg.embedder)))
        done: Dict[str, tuple] = {}
        for i in cache.completed():
            tables, array = cache.load(i, ('captions',))
            for row, emb in zip(tables['captions'].to_pylist(), array):
                done[row['crop_id']] = (row['caption'], emb)
        selected = crops.filter(crops.column('caption_selected'))
        wanted = selected.column('crop_id').to_pylist()
        missing = [i for i, cid in enumerate(wanted) if cid not in done]
        self.cache_stats['captions'] = dict(key=cache.key, reused_crops=len(wanted) - len(missing),
                                            computed_crops=len(missing))
        if missing:
            self._set_threads()
            self._caption_missing(selected.take(missing), cache, done)
        wanted = [cid for cid in wanted if cid in done]
        captions = rows_to_table([dict(crop_id=cid, caption=done[cid][0]) for cid in wanted], CAPTION_SCHEMA)
        dim = self.embedder.embedding_dim if not done else len(next(iter(done.values()))[1])
        caption_emb = (np.stack([done[cid][1] for cid in wanted]) if wanted else np.zeros((0, dim), np.float32))
        return captions, caption_emb.astype(np.float32)

    def _caption_missing(self, todo: pa.Table, cache: StageCache, done: Dict[str, tuple]) -> None:
        """Caption in batches of crops sorted by frame, so each image is decoded once."""
        batch_size = int(self.cfg.captioner.get('batch_size', 8))
        rows = sorted(todo.to_pylist(), key=lambda r: (r['sample_token'], r['camera'], r['crop_index']))
        next_index = max(cache.completed(), default=-1) + 1
        frame_key, image = None, None
        bar = tqdm(total=len(rows), desc='captions', unit='crop', disable=not self.progress)
        for start in range(0, len(rows), batch_size):
            chunk, crops = [], []
            batch = rows[start:start + batch_size]
            bar.update(len(batch))
            for r in batch:
                if (r['sample_token'], r['camera']) != frame_key:
                    frame_key = (r['sample_token'], r['camera'])
                    image, _ = decode_image(self._frame_paths[frame_key])
                if image is None:  # readable when detected, gone or broken since: a counted skip
                    self.skips['caption_images_unreadable'] += 1
                    continue
                chunk.append(r)
                crops.append(image.crop((r['crop_x1'], r['crop_y1'], r['crop_x2'], r['crop_y2'])))
            if not crops:
                continue
            t0 = time.perf_counter()
            texts = self.captioner.caption(crops)
            self.timer.add('caption', time.perf_counter() - t0, len(crops))
            t0 = time.perf_counter()
            text_emb = self.embedder.encode_texts([t if t.strip() else '(empty)' for t in texts])
            self.timer.add('caption_text_embed', time.perf_counter() - t0, len(texts))
            table = rows_to_table([dict(crop_id=r['crop_id'], caption=t) for r, t in zip(chunk, texts)],
                                  CAPTION_SCHEMA)
            cache.save(next_index, dict(captions=table), np.asarray(text_emb, np.float32))
            next_index += 1
            for r, t, e in zip(chunk, texts, text_emb):
                done[r['crop_id']] = (t, e)
        bar.close()

    # -- stage 6: concepts --------------------------------------------------------------------
    def score(self, crops: pa.Table, embeddings: np.ndarray, captions: pa.Table,
              caption_emb: np.ndarray) -> pa.Table:
        start = time.perf_counter()
        concept_emb = np.asarray(self.embedder.encode_texts(self.vocabulary.prompts()), np.float32)
        row_of = {cid: i for i, cid in enumerate(crops.column('crop_id').to_pylist())}
        ids = captions.column('crop_id').to_pylist()
        rows_idx = np.array([row_of[c] for c in ids], dtype=np.int64)
        image_emb = embeddings[rows_idx] if len(rows_idx) else np.zeros((0, concept_emb.shape[1]), np.float32)
        scores, weights, agreement = score_concepts(image_emb, caption_emb, concept_emb, self.weight_text)
        order, values = top_k(scores, int(self.cfg.concepts.get('top_k', 5)))
        concepts = self.vocabulary.concepts
        top_names = [[concepts[j] for j in row] for row in order]
        groups = assign_groups([names[0] for names in top_names], self.vocabulary)
        meta = crops.take(pa.array(rows_idx)).to_pylist() if len(rows_idx) else []
        rows = [dict(crop_id=m['crop_id'], sample_token=m['sample_token'], scene_token=m['scene_token'],
                     camera=m['camera'], crop_index=m['crop_index'], top_concepts=names,
                     top_scores=[float(v) for v in vals], top_concept=names[0], top_score=float(vals[0]),
                     text_weight=float(w), image_caption_cos=float(a), group=g)
                for m, names, vals, w, a, g in zip(meta, top_names, values, weights, agreement, groups)]
        self.timer.add('concepts', time.perf_counter() - start, len(rows))
        return rows_to_table(rows, CONCEPT_SCHEMA)

    # -- all stages -----------------------------------------------------------------------------
    def run(self) -> dict:
        os.makedirs(self.work_dir, exist_ok=True)
        t0 = time.perf_counter()
        frames = self.frame_source.load(self.data_root, self.ann_file)
        if not frames:
            raise ValueError(f'{self.ann_file} holds no samples')
        self._check_models_available()
        self.timer.add('frames', time.perf_counter() - t0, len(frames))
        self._frame_paths = {(f.sample_token, f.camera): f.img_path for f in frames}
        self.threads = int(torch.get_num_threads())

        frames_table, crops, embeddings, detection_key = self.detect_and_embed(frames)
        crops = self.find_outliers(crops, embeddings)
        captions, caption_emb = self.caption(crops, detection_key)
        concepts = self.score(crops, embeddings, captions, caption_emb)

        out = lambda name: os.path.join(self.work_dir, name)  # noqa: E731
        write_table_atomic(frames_table, out(FRAMES_FILE))
        write_table_atomic(crops, out(CROPS_FILE))
        write_npy_atomic(embeddings, out(EMBEDDINGS_FILE))
        write_table_atomic(captions, out(CAPTIONS_FILE))
        write_table_atomic(concepts, out(CONCEPTS_FILE))
        self.timer.add('total', time.perf_counter() - t0, len(frames))
        manifest = self._manifest(frames_table, crops, embeddings, captions, concepts)
        write_json_atomic(manifest, out(MANIFEST_FILE))
        return manifest

    def _manifest(self, frames_table, crops, embeddings, captions, concepts) -> dict:
        groups = Counter(concepts.column('group').to_pylist())
        outlier_counts = {name: int(pc.sum(crops.column(f'is_outlier_{name}')).as_py() or 0)
                          for name in self.outlier_detectors}
        return dict(
            inputs=dict(data_root=os.path.abspath(self.data_root), ann_file=self.ann_file),
            config=_plain(self.cfg),
            versions=_versions(),
            torch_threads=self.threads,
            counts=dict(frames=frames_table.num_rows,
                        samples=len(set(frames_table.column('sample_token').to_pylist())),
                        detections=int(pc.sum(frames_table.column('num_detections')).as_py() or 0),
                        crops=crops.num_rows, embedding_dim=int(embeddings.shape[1]) if embeddings.ndim == 2 else 0,
                        outliers=int(pc.sum(crops.column('is_outlier')).as_py() or 0) if crops.num_rows else 0,
                        outliers_per_method=outlier_counts,
                        caption_selected=captions.num_rows, captions=captions.num_rows,
                        concepts=concepts.num_rows, groups=dict(groups)),
            skips=dict(sorted(self.skips.items())),
            cache=self.cache_stats,
            stages=self.timer.report(),
        )
