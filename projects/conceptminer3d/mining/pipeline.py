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
import time
from collections import Counter
from typing import Dict, List, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from mmengine.config import Config
from tqdm import tqdm

from ..registry import CAPTIONERS, DETECTORS_2D, EMBEDDERS, FRAME_SOURCES, OUTLIER_DETECTORS, build_component
from .cache import StageCache
from .concepts import ConceptVocabulary, assign_groups, score_concepts, top_k, validate_text_weight
from .contracts import (
    CAPTION_SCHEMA,
    CONCEPT_SCHEMA,
    CROP_SCHEMA,
    FRAME_SCHEMA,
    FRAME_STATUS_OK,
    MANIFEST_FILE,
    concat_tables,
    concept_record,
    crop_record,
    rows_to_table,
    write_json_atomic,
    write_mining_tables,
)
from .frames import Frame
from .images import cut_crops, decode_image, prefetched
from .model_loading import check_available
from .outlier_scoring import combine_outlier_flags, score_outliers
from .run_record import StageTimer, package_versions, plain_config

logger = logging.getLogger('conceptminer3d.mining')


class MiningPipeline:
    """Runs every stage for one (data_root, ann_file) and writes the tables to ``work_dir``.

    Stages, in ``run`` order: ``frame_source.load`` (frames), ``detect_and_embed`` (2D boxes,
    crops, CLIP embeddings; cached per batch of frames), ``find_outliers``, ``caption``
    (cached per batch of crops), ``score`` (concepts and groups). Each model is built from its
    registry when a stage first has work for it, so a fully cached re-run loads none.
    Everything that can be wrong with the configuration is checked in the constructor, and
    every model's offline availability before the first image is read.

    Args:
        cfg (Config): a mining config (``configs/mining/default.py`` has every key):
            ``frames``, ``detector``, ``embedder``, ``captioner`` (component configs),
            ``frame_batch_size``, ``crops``, ``outliers``, ``caption_selection``, ``concepts``
            and ``num_threads``. ``captioner=None`` turns captions off: no captioner is
            checked or built, ``captions.parquet`` is empty, and the caption-selected crops
            are scored on their image embedding alone (text weight 0, ``image_caption_cos``
            NaN).
        data_root (str): dataset root; image paths are resolved under it.
        ann_file (str): v2 info pickle, absolute or relative to ``data_root``.
        work_dir (str): where the tables, ``manifest.json`` and ``cache/`` go.
        progress (bool): show progress bars.
    """

    def __init__(self, cfg: Config, data_root: str, ann_file: str, work_dir: str, progress: bool = True):
        self.cfg = cfg
        self.data_root, self.ann_file, self.work_dir = data_root, ann_file, work_dir
        self.progress = progress
        self.timer = StageTimer()
        self.skips: Counter = Counter()
        self.cache_stats: Dict[str, Dict[str, int]] = {}
        # Everything that can be wrong with the configuration fails here, before any work.
        self.vocabulary = ConceptVocabulary(**plain_config(cfg.concepts.vocabulary))
        self.weight_text = cfg.concepts.get('weight_text', 'adaptive')
        validate_text_weight(self.weight_text)
        self.outlier_detectors = {}
        for method in cfg.outliers.methods:
            method = plain_config(method)
            name = method.pop('name', method['type'])
            method.setdefault('contamination', cfg.outliers.contamination)
            self.outlier_detectors[name] = build_component(OUTLIER_DETECTORS, method)
            self.outlier_detectors[name].check_params()  # estimators validate in fit, too late here
        if cfg.outliers.combine not in ('union', 'vote'):
            raise ValueError(f"outliers.combine must be 'union' or 'vote', got {cfg.outliers.combine!r}")
        self.frame_source = build_component(FRAME_SOURCES, cfg.frames)
        self.captions_on = cfg.get('captioner') is not None
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
        for registry, component in (
            (DETECTORS_2D, self.cfg.detector),
            (EMBEDDERS, self.cfg.embedder),
            (CAPTIONERS, self.cfg.captioner),
        ):
            if component is not None:  # a captioner of None: captions off
                check_available(registry, plain_config(component))

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
        return dict(
            frames=[self._file_identity(f) for f in frames],
            detector=plain_config(self.cfg.detector),
            embedder=plain_config(self.cfg.embedder),
            crops=plain_config(self.cfg.crops),
            frame_batch_size=self.cfg.frame_batch_size,
        )

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
            row = dict(
                frame_id=frame.frame_id,
                sample_token=frame.sample_token,
                scene_token=frame.scene_token,
                sample_idx=frame.sample_idx,
                camera=frame.camera,
                img_path=frame.img_path,
                timestamp=frame.timestamp,
                width=0,
                height=0,
                status=status,
                num_detections=0,
                num_filtered=0,
                num_too_small=0,
                num_crops=0,
            )
            frame_rows.append(row)
            if image is None:
                logger.warning('skipping %s image %s', status, frame.img_path)
                continue
            det = next(det_iter)
            cut = cut_crops(image, det, names, crops_cfg.padding, crops_cfg.min_size, keep_classes)
            row.update(
                width=image.width,
                height=image.height,
                num_detections=len(det),
                num_filtered=cut.num_filtered,
                num_too_small=cut.num_too_small,
                num_crops=len(cut.crops),
            )
            for crop in cut.crops:
                k = crop.detection
                crop_rows.append(
                    crop_record(
                        frame, crop.index, det.boxes_xyxy[k], crop.box, det.labels[k], crop.class_name, det.scores[k]
                    )
                )
                crop_images.append(crop.image)
        start = time.perf_counter()
        embeddings = (
            self.embedder.encode_images(crop_images)
            if crop_images
            else np.zeros((0, self.embedder.embedding_dim), np.float32)
        )
        self.timer.add('embed', time.perf_counter() - start, len(crop_images))
        return (
            rows_to_table(frame_rows, FRAME_SCHEMA),
            rows_to_table(crop_rows, CROP_SCHEMA),
            np.asarray(embeddings, dtype=np.float32),
        )

    def detect_and_embed(self, frames: List[Frame]):
        batch_size = int(self.cfg.frame_batch_size)
        batches = [frames[i : i + batch_size] for i in range(0, len(frames), batch_size)]
        cache = StageCache(os.path.join(self.work_dir, 'cache'), 'detect_embed', self._detection_payload(frames))
        todo = [i for i in range(len(batches)) if not cache.has(i)]
        self.cache_stats['detect_embed'] = dict(
            key=cache.key, reused_batches=len(batches) - len(todo), computed_batches=len(todo)
        )
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
        self.skips['frames_without_detections'] = sum(
            r['status'] == FRAME_STATUS_OK and not r['num_detections'] for r in rows
        )
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
                logger.warning(
                    'outliers: %d crops in group %r, fewer than min_crops=%d; not scored', len(idx), group, min_crops
                )
                continue
            # One group covering every crop is scored in place: a copy would double the memory.
            group_scores, group_flags = score_outliers(
                self.outlier_detectors, embeddings if len(idx) == n else embeddings[idx]
            )
            for name in self.outlier_detectors:
                scores[name][idx] = group_scores[name]  # higher = more unusual
                flags[name][idx] = group_flags[name]
        combined = combine_outlier_flags(flags, rule=self.cfg.outliers.combine) if n else np.zeros(0, bool)
        for name in self.outlier_detectors:
            crops = crops.append_column(f'outlier_score_{name}', pa.array(scores[name], pa.float32()))
            crops = crops.append_column(f'is_outlier_{name}', pa.array(flags[name]))
        crops = crops.append_column('is_outlier', pa.array(combined, pa.bool_()))
        select = self.cfg.caption_selection
        by_class = np.isin(
            np.asarray(crops.column('yolo_class').to_pylist(), dtype=object), list(select.get('yolo_classes') or [])
        )
        selected = (combined if select.get('outliers', True) else np.zeros(n, bool)) | by_class
        crops = crops.append_column('caption_selected', pa.array(selected, pa.bool_()))
        self.timer.add('outliers', time.perf_counter() - start, n)
        return crops

    # -- stage 5: captions for the selected crops ------------------------------------------
    def caption(self, crops: pa.Table, detection_key: str) -> tuple:
        if not self.captions_on:
            return CAPTION_SCHEMA.empty_table(), np.zeros((0, 0), np.float32)
        cache = StageCache(
            os.path.join(self.work_dir, 'cache'),
            'captions',
            dict(
                detection=detection_key,
                captioner=plain_config(self.cfg.captioner),
                embedder=plain_config(self.cfg.embedder),
            ),
        )
        done: Dict[str, tuple] = {}
        for i in cache.completed():
            tables, array = cache.load(i, ('captions',))
            for row, emb in zip(tables['captions'].to_pylist(), array):
                done[row['crop_id']] = (row['caption'], emb)
        selected = crops.filter(crops.column('caption_selected'))
        wanted = selected.column('crop_id').to_pylist()
        missing = [i for i, cid in enumerate(wanted) if cid not in done]
        self.cache_stats['captions'] = dict(
            key=cache.key, reused_crops=len(wanted) - len(missing), computed_crops=len(missing)
        )
        if missing:
            self._set_threads()
            self._caption_missing(selected.take(missing), cache, done)
        wanted = [cid for cid in wanted if cid in done]
        captions = rows_to_table([dict(crop_id=cid, caption=done[cid][0]) for cid in wanted], CAPTION_SCHEMA)
        dim = self.embedder.embedding_dim if not done else len(next(iter(done.values()))[1])
        caption_emb = np.stack([done[cid][1] for cid in wanted]) if wanted else np.zeros((0, dim), np.float32)
        return captions, caption_emb.astype(np.float32)

    def _caption_missing(self, todo: pa.Table, cache: StageCache, done: Dict[str, tuple]) -> None:
        """Caption in batches of crops sorted by frame, so each image is decoded once."""
        # One cache shard per captioner batch; the captioner class owns the batch size's default.
        batch_size = self.captioner.batch_size
        rows = sorted(todo.to_pylist(), key=lambda r: (r['sample_token'], r['camera'], r['crop_index']))
        next_index = max(cache.completed(), default=-1) + 1
        frame_key, image = None, None
        bar = tqdm(total=len(rows), desc='captions', unit='crop', disable=not self.progress)
        for start in range(0, len(rows), batch_size):
            chunk, crops = [], []
            batch = rows[start : start + batch_size]
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
            table = rows_to_table([dict(crop_id=r['crop_id'], caption=t) for r, t in zip(chunk, texts)], CAPTION_SCHEMA)
            cache.save(next_index, dict(captions=table), np.asarray(text_emb, np.float32))
            next_index += 1
            for r, t, e in zip(chunk, texts, text_emb):
                done[r['crop_id']] = (t, e)
        bar.close()

    # -- stage 6: concepts --------------------------------------------------------------------
    def score(self, crops: pa.Table, embeddings: np.ndarray, captions: pa.Table, caption_emb: np.ndarray) -> pa.Table:
        start = time.perf_counter()
        concept_emb = np.asarray(self.embedder.encode_texts(self.vocabulary.prompts()), np.float32)
        row_of = {cid: i for i, cid in enumerate(crops.column('crop_id').to_pylist())}
        selected = captions if self.captions_on else crops.filter(crops.column('caption_selected'))
        ids = selected.column('crop_id').to_pylist()
        rows_idx = np.array([row_of[c] for c in ids], dtype=np.int64)
        image_emb = embeddings[rows_idx] if len(rows_idx) else np.zeros((0, concept_emb.shape[1]), np.float32)
        if self.captions_on:
            scores, weights, agreement = score_concepts(image_emb, caption_emb, concept_emb, self.weight_text)
        else:
            # Without a caption the text term has nothing to add: a text weight of 0 (a zero
            # caption embedding is never read) leaves cos(image, concept), whatever weight_text says.
            scores, weights, _ = score_concepts(image_emb, np.zeros_like(image_emb), concept_emb, 0.0)
            agreement = np.full(len(ids), np.nan, np.float32)
        order, values = top_k(scores, int(self.cfg.concepts.get('top_k', 5)))
        concepts = self.vocabulary.concepts
        top_names = [[concepts[j] for j in row] for row in order]
        groups = assign_groups([names[0] for names in top_names], self.vocabulary)
        meta = crops.take(pa.array(rows_idx)).to_pylist() if len(rows_idx) else []
        rows = [concept_record(*row) for row in zip(meta, top_names, values, weights, agreement, groups)]
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

        write_mining_tables(self.work_dir, frames_table, crops, embeddings, captions, concepts)
        self.timer.add('total', time.perf_counter() - t0, len(frames))
        manifest = self._manifest(frames_table, crops, embeddings, captions, concepts)
        write_json_atomic(manifest, os.path.join(self.work_dir, MANIFEST_FILE))
        return manifest

    def _manifest(self, frames_table, crops, embeddings, captions, concepts) -> dict:
        groups = Counter(concepts.column('group').to_pylist())
        outlier_counts = {
            name: int(pc.sum(crops.column(f'is_outlier_{name}')).as_py() or 0) for name in self.outlier_detectors
        }
        return dict(
            inputs=dict(data_root=os.path.abspath(self.data_root), ann_file=self.ann_file),
            config=plain_config(self.cfg),
            versions=package_versions(),
            torch_threads=self.threads,
            counts=dict(
                frames=frames_table.num_rows,
                samples=len(set(frames_table.column('sample_token').to_pylist())),
                detections=int(pc.sum(frames_table.column('num_detections')).as_py() or 0),
                crops=crops.num_rows,
                embedding_dim=int(embeddings.shape[1]) if embeddings.ndim == 2 else 0,
                outliers=int(pc.sum(crops.column('is_outlier')).as_py() or 0) if crops.num_rows else 0,
                outliers_per_method=outlier_counts,
                caption_selected=captions.num_rows if self.captions_on else concepts.num_rows,
                captions=captions.num_rows,
                concepts=concepts.num_rows,
                groups=dict(groups),
            ),
            skips=dict(sorted(self.skips.items())),
            cache=self.cache_stats,
            stages=self.timer.report(),
        )
