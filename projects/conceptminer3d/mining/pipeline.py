"""The mining pipeline: info pickle → frames → 2D boxes → crops → embeddings → outliers →
captions → concept groups, each stage a config-built component.

Per-image stages (detection, embedding, captioning; ``stages/batches.py`` computes a batch)
are independent per frame and cached per frame / crop (``cache.ItemCache``), so a killed run
resumes and a re-run with only a new vocabulary or threshold reuses them. Global stages
(outliers, concepts) are pure functions of the gathered tables and always recomputed: they
take seconds.

An executor (``executors``) schedules the per-image stages: every batch in this process, or
batch ``k`` on rank ``k % world_size`` of a torchrun job, with the global stages on rank 0
once every rank's shards are written. A batch's cache shard is named by its number, so the
outputs are the same, byte for byte, whatever the number of processes.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from typing import Dict, List, Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from mmengine.config import Config
from tqdm import tqdm

from ..registry import CAPTIONERS, DETECTORS_2D, EMBEDDERS, FRAME_SOURCES, OUTLIER_DETECTORS, build_component
from .contracts import CAPTION_SCHEMA, EMBEDDINGS_FILE, MANIFEST_FILE, run_manifest
from .models.identity import result_identity
from .models.model_loading import check_available, component_config
from .outliers.scoring import outlier_columns
from .runtime.assembly import crops_from_cache, frame_skips, frames_table_from_cache, write_mining_tables
from .runtime.atomic_files import remove_partial_outputs, write_json_atomic
from .runtime.cache import CACHE_DIR, ITEM_POSITION, ItemCache
from .runtime.executors import LocalExecutor
from .runtime.images import image_digest, last_image_reader, prefetched
from .runtime.run_record import StageTimer, package_versions, plain_config, table_counts
from .runtime.run_state import CaptionPlan, MiningRun
from .stages.batches import caption_batch, detect_and_embed_batch
from .stages.concepts import ConceptVocabulary, concepts_of_crops, validate_text_weight

logger = logging.getLogger('conceptminer3d.mining')

# Cache shards are written per batch (a killed run loses one batch at most), then merged into
# shards of about this many frames / crops, so a big run leaves tens of files, not 100,000s.
CACHE_SHARD_FRAMES = 4096
CACHE_SHARD_CROPS = 65536


class MiningPipeline:
    """Runs every stage for one (data_root, ann_file) and writes the tables to ``work_dir``.

    Stages, in ``run`` order: ``start`` (frames), ``detect_and_embed`` (2D boxes, crops, CLIP
    embeddings, cached per frame; every rank) then ``assemble_detections`` (main rank),
    ``find_outliers``, ``caption`` (cached per crop; every rank) then ``assemble_captions``,
    ``score`` (concepts and groups). The run's state is a ``MiningRun`` passed between them.
    Each model is built from its registry when a stage first has work for it, so a fully cached
    re-run loads none. Everything that can be wrong with the configuration is checked in the
    constructor, and every model's offline availability before the first image is read.

    Args:
        cfg (Config): a mining config (``configs/mining/default.py`` has every key):
            ``frames``, ``detector``, ``embedder``, ``captioner`` (component configs),
            ``frame_batch_size`` (None: the detector's batch size, at least 16),
            ``decode_workers`` (None: ``images.default_decode_workers``), ``crops``,
            ``outliers``, ``caption_selection``, ``concepts`` and ``num_threads``.
            ``captioner=None`` turns captions off: no captioner is checked or built,
            ``captions.parquet`` is empty, and the caption-selected crops are scored on their
            image embedding alone (text weight 0, ``image_caption_cos`` NaN).
        data_root (str): dataset root; image paths are resolved under it.
        ann_file (str): v2 info pickle, absolute or relative to ``data_root``.
        work_dir (str): where the tables, ``manifest.json`` and ``cache/`` go.
        progress (bool): show progress bars.
        executor (LocalExecutor, optional): schedules the per-image stages; default: all in
            this process. With a ``DistributedExecutor`` every rank calls ``run``, and only
            rank 0 gets the manifest (the other ranks get None).
    """

    def __init__(
        self,
        cfg: Config,
        data_root: str,
        ann_file: str,
        work_dir: str,
        progress: bool = True,
        executor: Optional[LocalExecutor] = None,
    ):
        self.cfg = cfg
        self.executor = executor or LocalExecutor()
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
            self._detector = build_component(DETECTORS_2D, component_config(self.cfg, 'detector'))
        return self._detector

    @property
    def embedder(self):
        if self._embedder is None:
            self._embedder = build_component(EMBEDDERS, component_config(self.cfg, 'embedder'))
        return self._embedder

    @property
    def captioner(self):
        if self._captioner is None:
            self._captioner = build_component(CAPTIONERS, component_config(self.cfg, 'captioner'))
        return self._captioner

    def _check_models_available(self) -> None:
        """Every model must load offline before the first image is touched."""
        for registry, key in ((DETECTORS_2D, 'detector'), (EMBEDDERS, 'embedder'), (CAPTIONERS, 'captioner')):
            if self.cfg.get(key) is not None:  # a captioner of None: captions off
                check_available(registry, component_config(self.cfg, key))

    def frame_batch_size(self) -> int:
        """Images handed to the detector at a time (and per cache write): the config's, else the
        detector's batch size, at least 16 (a GPU batch of 64 would starve on 16 at a time)."""
        return int(self.cfg.get('frame_batch_size') or max(16, self.detector.batch_size))

    def _set_threads(self) -> int:
        threads = int(self.cfg.get('num_threads') or os.cpu_count() or 1)
        torch.set_num_threads(threads)
        return threads

    # -- stage 2+3: detection, crops and embeddings, per frame -----------------------------
    def _detection_payload(self) -> dict:
        # What detections, crops and embeddings depend on; never device, batch sizes or paths.
        return dict(
            detector=result_identity(DETECTORS_2D, component_config(self.cfg, 'detector')),
            embedder=result_identity(EMBEDDERS, component_config(self.cfg, 'embedder')),
            crops=plain_config(self.cfg.crops),
        )

    def detect_and_embed(self, run: MiningRun) -> str:
        """Detections, crops and embeddings of every frame, on every rank: cached per frame (by
        its id and image content), computed for the frames no shard holds, in batches of
        ``frame_batch_size()``, this rank's share of them. Sets ``run.image_digests`` and
        ``run.detection_cache`` and returns the cache's key."""
        frames = run.frames
        cache = ItemCache(os.path.join(self.work_dir, CACHE_DIR), 'detect_embed', self._detection_payload())

        def plan():
            items = [f'{f.frame_id}@{image_digest(f)}' for f in frames]
            found = cache.index()
            return items, [i for i, item in enumerate(items) if item not in found], cache.next_index()

        # Rank 0 reads the images' identities and the cache once, before any rank writes a shard.
        items, todo, first_shard = self.executor.share('detect_plan', plan)
        run.image_digests = {f.frame_id: item.rsplit('@', 1)[1] for f, item in zip(frames, items)}
        run.detection_cache = cache
        self.cache_stats['detect_embed'] = dict(
            key=cache.key, reused_frames=len(frames) - len(todo), computed_frames=len(todo)
        )
        batch_size = self.frame_batch_size() if todo else 1
        batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
        mine = list(self.executor.assign(len(batches)))
        if mine:
            self.detector  # noqa: B018  (ultralytics lowers torch's thread count when it loads)
            run.threads = self._set_threads()
            start = time.perf_counter()
            # Rank 0's bar stands for the job: every rank gets about the same share.
            show = self.progress and self.executor.is_main
            bar = tqdm(total=len(frames), desc='detect + embed', unit='img', disable=not show)
            bar.update(len(frames) - len(todo))
            work = [batches[k] for k in mine]
            decoding = prefetched([[frames[i] for i in b] for b in work], self.cfg.get('decode_workers'))
            for k, positions, decoded in zip(mine, work, decoding):
                frame_table, crop_table, embeddings = detect_and_embed_batch(
                    self.detector, self.embedder, [frames[i] for i in positions], decoded, self.cfg.crops, self.timer
                )
                # Which of the shard's items (frames) each crop row belongs to.
                owner = np.repeat(np.arange(len(positions)), frame_table.column('num_crops').to_numpy())
                crop_table = crop_table.append_column(ITEM_POSITION, pa.array(owner, pa.int64()))
                cache.save_items(
                    first_shard + k,
                    [items[i] for i in positions],
                    dict(frames=frame_table, crops=crop_table),
                    embeddings,
                )
                bar.update(len(positions) * self.executor.world_size)
            bar.close()
            self.timer.add('detect_embed_total', time.perf_counter() - start, sum(map(len, work)))
        self.executor.finish('detect_embed')
        if todo and self.executor.is_main:
            cache.compact(CACHE_SHARD_FRAMES, ('frames', 'crops'))
        return cache.key

    def assemble_detections(self, run: MiningRun) -> Tuple[pa.Table, pa.Table, np.ndarray]:
        """The frames and crops tables and the crops' embeddings (memory-mapped, written beside
        the outputs), from the cache shards every rank wrote; on the main rank, once every rank
        has finished ``detect_and_embed``."""
        cache = run.detection_cache
        items = [f'{f.frame_id}@{run.image_digests[f.frame_id]}' for f in run.frames]
        found = cache.index()
        frames_table = frames_table_from_cache(run.frames, cache, items, found)
        embeddings_path = os.path.join(self.work_dir, f'{EMBEDDINGS_FILE}.tmp-{os.getpid()}.npy')
        crops, embeddings = crops_from_cache(cache, items, found, embeddings_path)
        self.skips.update(frame_skips(frames_table))  # from the table: a cached run reports the same
        return frames_table, crops, embeddings

    # -- stage 4: outliers (global) ---------------------------------------------------------
    def find_outliers(self, crops: pa.Table, embeddings: np.ndarray) -> pa.Table:
        start = time.perf_counter()
        n = len(embeddings)
        outliers = self.cfg.outliers
        min_crops = int(outliers.get('min_crops', 10))
        crops, too_small = outlier_columns(
            crops, embeddings, self.outlier_detectors, outliers.get('per_class', False), min_crops, outliers.combine
        )
        for group in too_small:
            self.skips['outlier_groups_too_small'] += 1
            logger.warning('outliers: fewer than min_crops=%d crops in group %r; not scored', min_crops, group)
        combined = crops.column('is_outlier').to_numpy(zero_copy_only=False)
        select = self.cfg.caption_selection
        hint_classes = pa.array(list(select.get('yolo_classes') or []), pa.string())
        by_class = pc.is_in(crops.column('yolo_class'), value_set=hint_classes).to_numpy(zero_copy_only=False)
        selected = (combined if select.get('outliers', True) else np.zeros(n, bool)) | by_class
        crops = crops.append_column('caption_selected', pa.array(selected, pa.bool_()))
        self.timer.add('outliers', time.perf_counter() - start, n)
        return crops

    # -- stage 5: captions for the selected crops ------------------------------------------
    def _caption_cache(self, run: MiningRun) -> ItemCache:
        payload = dict(
            detection=run.detection_cache.key,
            captioner=result_identity(CAPTIONERS, component_config(self.cfg, 'captioner')),
            embedder=result_identity(EMBEDDERS, component_config(self.cfg, 'embedder')),
        )
        return ItemCache(os.path.join(self.work_dir, CACHE_DIR), 'captions', payload)

    def caption(self, run: MiningRun, crops: Optional[pa.Table]) -> CaptionPlan:
        """Captions (and their text embeddings) of the caption-selected crops, on every rank:
        cached per crop (by its id and its image's identity), computed for the crops no shard
        holds, this rank's share of them. ``crops`` (with ``caption_selected``) is the main
        rank's; it plans, and every rank gets the plan. Captions off: an empty plan."""
        if not self.captions_on:
            return CaptionPlan(None, [], None, [], 0)
        cache = self._caption_cache(run)

        def plan():
            selected = crops.filter(crops.column('caption_selected'))
            frame_ids = pc.binary_join_element_wise(selected.column('sample_token'), selected.column('camera'), '/')
            selected_items = [
                f'{crop}@{run.image_digests[frame]}'
                for crop, frame in zip(selected.column('crop_id').to_pylist(), frame_ids.to_pylist())
            ]
            found = cache.index()
            missing = [i for i, item in enumerate(selected_items) if item not in found]
            todo = selected.take(pa.array(missing, pa.int64())).select(
                ['crop_id', 'sample_token', 'camera', 'crop_index', 'crop_x1', 'crop_y1', 'crop_x2', 'crop_y2']
            )
            # Sorted by frame, so that a batch decodes each of its images once.
            order = pc.sort_indices(
                todo, sort_keys=[('sample_token', 'ascending'), ('camera', 'ascending'), ('crop_index', 'ascending')]
            )
            todo_items = [selected_items[missing[i]] for i in order.to_pylist()]
            return selected_items, todo.take(order), todo_items, cache.next_index()

        selected_items, todo, todo_items, first_shard = self.executor.share('caption_plan', plan)
        self.cache_stats['captions'] = dict(
            key=cache.key, reused_crops=len(selected_items) - len(todo_items), computed_crops=len(todo_items)
        )
        if todo_items:
            self._caption_missing(run, todo, todo_items, cache, first_shard)
        self.executor.finish('captions')
        if todo_items and self.executor.is_main:
            cache.compact(CACHE_SHARD_CROPS, ('captions',))
        return CaptionPlan(cache, selected_items, todo, todo_items, first_shard)

    def assemble_captions(self, plan: CaptionPlan) -> Tuple[pa.Table, np.ndarray]:
        """The captions table and the captions' text embeddings (a memory-mapped scratch file), on
        the main rank once every rank has finished ``caption``. A crop whose image broke since it
        was detected has no caption (a counted skip)."""
        if not self.captions_on:
            return CAPTION_SCHEMA.empty_table(), np.zeros((0, 0), np.float32)
        found = plan.cache.index()
        done = [item for item in plan.selected_items if item in found]
        if not done:
            return CAPTION_SCHEMA.empty_table(), np.zeros((0, self.embedder.embedding_dim), np.float32)
        # Scratch (scored, not an output), named like a partial output so a killed run's is removed.
        scratch = os.path.join(self.work_dir, f'caption_embeddings.npy.tmp-{os.getpid()}.npy')
        captions, caption_emb = plan.cache.gather(done, found, 'captions', array_path=scratch)
        return captions.cast(CAPTION_SCHEMA), caption_emb

    def _caption_missing(
        self, run: MiningRun, todo: pa.Table, items: List[str], cache: ItemCache, first_shard: int
    ) -> None:
        """Caption this process's batches of ``todo`` (sorted by frame); batch ``j`` is cache
        shard ``first_shard + j`` (compacted afterwards), so a killed run loses one batch at most."""
        batch_size = self.captioner.batch_size  # the captioner class owns its default
        self._set_threads()
        num_batches = -(-todo.num_rows // batch_size)
        mine = list(self.executor.assign(num_batches))
        frame_image = last_image_reader(run.frame_paths)
        show = self.progress and self.executor.is_main
        bar = tqdm(total=todo.num_rows, desc='captions', unit='crop', disable=not show)
        for j in mine:
            positions = range(j * batch_size, min((j + 1) * batch_size, todo.num_rows))
            batch = todo.slice(positions.start, len(positions)).to_pylist()
            bar.update(len(batch) * self.executor.world_size)
            kept, table, text_emb = caption_batch(self.captioner, self.embedder, batch, frame_image, self.timer)
            if len(kept) < len(batch):  # readable when detected, gone or broken since: a counted skip
                self.skips['caption_images_unreadable'] += len(batch) - len(kept)
            if kept:
                cache.save_items(first_shard + j, [items[positions[p]] for p in kept], dict(captions=table), text_emb)
        bar.close()

    # -- stage 6: concepts --------------------------------------------------------------------
    def score(self, crops: pa.Table, embeddings: np.ndarray, captions: pa.Table, caption_emb: np.ndarray) -> pa.Table:
        start = time.perf_counter()
        concept_emb = np.asarray(self.embedder.encode_texts(self.vocabulary.prompts()), np.float32)
        selected = captions if self.captions_on else crops.filter(crops.column('caption_selected'))
        table = concepts_of_crops(
            crops,
            embeddings,
            selected.column('crop_id'),
            caption_emb if self.captions_on else None,
            concept_emb,
            self.vocabulary,
            self.weight_text,
            int(self.cfg.concepts.get('top_k', 5)),
        )
        self.timer.add('concepts', time.perf_counter() - start, table.num_rows)
        return table

    # -- all stages -----------------------------------------------------------------------------
    def start(self) -> MiningRun:
        """Read the frames and check every model offline: the run every stage is handed."""
        frames = self.frame_source.load(self.data_root, self.ann_file)
        if not frames:
            raise ValueError(f'{self.ann_file} holds no samples')
        self._check_models_available()
        return MiningRun(frames=frames, threads=int(torch.get_num_threads()))

    def run(self) -> Optional[dict]:
        """Every stage; the manifest on the main rank, None on the others (they compute their
        share of the per-image stages and leave the rest to it)."""
        os.makedirs(self.work_dir, exist_ok=True)
        if self.executor.is_main:  # the other ranks write only complete cache shards
            remove_partial_outputs(self.work_dir)
        t0 = time.perf_counter()
        run = self.start()
        self.timer.add('frames', time.perf_counter() - t0, len(run.frames))

        self.detect_and_embed(run)
        if not self.executor.is_main:
            self.caption(run, None)  # this rank's share of the captions
            return None
        frames_table, crops, embeddings = self.assemble_detections(run)
        crops = self.find_outliers(crops, embeddings)
        captions, caption_emb = self.assemble_captions(self.caption(run, crops))
        concepts = self.score(crops, embeddings, captions, caption_emb)
        if isinstance(caption_emb, np.memmap):
            os.remove(caption_emb.filename)

        write_mining_tables(self.work_dir, frames_table, crops, embeddings, captions, concepts)
        self.executor.close()
        self.timer.add('total', time.perf_counter() - t0, len(run.frames))
        manifest = self._manifest(run, frames_table, crops, embeddings, captions, concepts)
        write_json_atomic(manifest, os.path.join(self.work_dir, MANIFEST_FILE))
        return manifest

    def _manifest(self, run: MiningRun, frames_table, crops, embeddings, captions, concepts) -> dict:
        counts = table_counts(frames_table, crops, embeddings, captions, concepts, list(self.outlier_detectors))
        if not self.captions_on:  # the caption-selected crops are scored without a caption
            counts['caption_selected'] = concepts.num_rows
        return run_manifest(
            data_root=self.data_root,
            ann_file=self.ann_file,
            concept_source=type(self).__name__,
            config=plain_config(self.cfg),
            versions=package_versions(),
            counts=counts,
            skips=self.skips,
            stages=self.timer.report(),
            cache=self.cache_stats,
            torch_threads=run.threads,
        )
