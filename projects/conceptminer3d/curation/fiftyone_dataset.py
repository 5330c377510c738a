"""A mining run as a FiftyOne grouped dataset: one group per sample token, one slice per camera.

Each slice is the camera image in place (never copied) with the run's 2D boxes as
``Detections`` in ``detections``: YOLO class and confidence, and per box its crop id, top
concept and score, concept group (Common / Rare / Target), outlier scores and flags, and
caption. Each sample carries its sample and scene tokens, the subsets that hold it
(``subsets``), why (``subset_reasons``: subset → ``target`` / ``random`` / ...) and the concept
that won it its slot (``slot_concepts``). The crop embeddings the run already has become a
patch similarity index (brain key ``crop_similarity``: no model runs), and there is a saved
view per subset (``subset-<name>``: its sample groups) and per Target concept
(``target-<concept>``: the camera images with such crops, only those crops shown).

The dataset is built under a temporary, non-persistent name and renamed when complete, so a
killed export leaves no half dataset under the name (FiftyOne deletes non-persistent datasets
itself; the next export also sweeps what a dead one left).
"""

from __future__ import annotations

import os
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..mining.contracts import (
    CAPTIONS_FILE,
    CONCEPTS_FILE,
    CROPS_FILE,
    EMBEDDINGS_FILE,
    FRAME_STATUS_OK,
    FRAMES_FILE,
    GROUP_TARGET,
    MANIFEST_FILE,
    require_mining_outputs,
)
from ..subsets import SUBSET_DIR, subset_membership, subset_names
from .database import connect

DETECTIONS_FIELD = 'detections'
GROUP_FIELD = 'group'  # FiftyOne's group field; the crops' concept group is ``concept_group``
SIMILARITY_BRAIN_KEY = 'crop_similarity'
DATASET_PREFIX = 'conceptminer3d-'
_PARTIAL = '-partial-'
# Crop columns that make a detection's box, class and confidence and say where it lies.
_BOX_COLUMNS = ('sample_token', 'camera', 'x1', 'y1', 'x2', 'y2', 'yolo_class', 'yolo_conf')
# Crop columns copied onto each detection as they are (the outlier stage's columns are found by prefix).
_CROP_ATTRIBUTES = ('crop_id', 'crop_index')
_OUTLIER_PREFIXES = ('outlier_score_', 'is_outlier', 'caption_selected')


def default_dataset_name(work_dir: str) -> str:
    """``conceptminer3d-<work dir's name>``: the name an export gets unless told otherwise."""
    return DATASET_PREFIX + os.path.basename(os.path.abspath(work_dir).rstrip(os.sep))


def _read_crops(work_dir: str) -> pd.DataFrame:
    """Every crop with its concept and caption (None where the run scored or captioned none)."""
    crops = pq.read_table(os.path.join(work_dir, CROPS_FILE))
    keep = [*_BOX_COLUMNS, *_CROP_ATTRIBUTES]
    keep += [c for c in crops.column_names if c.startswith(_OUTLIER_PREFIXES)]
    frame = crops.select(keep).to_pandas()
    frame['row'] = np.arange(len(frame))
    concepts = pq.read_table(
        os.path.join(work_dir, CONCEPTS_FILE), columns=['crop_id', 'top_concept', 'top_score', 'group']
    ).to_pandas()
    concepts = concepts.rename(
        columns={'top_concept': 'concept', 'top_score': 'concept_score', 'group': 'concept_group'}
    )
    frame = frame.merge(concepts, on='crop_id', how='left')
    captions_path = os.path.join(work_dir, CAPTIONS_FILE)
    if os.path.isfile(captions_path):
        frame = frame.merge(pq.read_table(captions_path).to_pandas(), on='crop_id', how='left')
    else:
        frame['caption'] = None
    return frame.sort_values('row', kind='stable')


def _python(value):
    """A plain Python value for FiftyOne (no numpy scalars, None for missing)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _detections(fo, crops: pd.DataFrame, width: int, height: int):
    attributes = [c for c in crops.columns if c not in (*_BOX_COLUMNS, 'row')]
    detections = []
    for crop in crops.itertuples(index=False):
        box = [crop.x1 / width, crop.y1 / height, (crop.x2 - crop.x1) / width, (crop.y2 - crop.y1) / height]
        extra = {name: _python(getattr(crop, name)) for name in attributes}
        detections.append(
            fo.Detection(
                label=crop.yolo_class, confidence=float(crop.yolo_conf), bounding_box=[float(v) for v in box], **extra
            )
        )
    return fo.Detections(detections=detections)


def _memberships(work_dir: str, subsets: Optional[Sequence[str]]) -> Dict[str, Dict[str, dict]]:
    available = subset_names(work_dir)
    names = list(subsets) if subsets else available
    unknown = sorted(set(names) - set(available))
    if unknown:
        raise ValueError(
            f'no subset {", ".join(unknown)} in {os.path.join(work_dir, SUBSET_DIR)} '
            f'(there: {", ".join(available) or "none"})'
        )
    return {name: subset_membership(work_dir, name) for name in names}


def _sweep_partials(fo, name: str) -> None:
    """Delete what killed exports of ``name`` left (their process is gone)."""
    for partial in fo.list_datasets(f'{name}{_PARTIAL}*'):
        pid = partial.rsplit(_PARTIAL, 1)[1]
        if not (pid.isdigit() and os.path.exists(f'/proc/{pid}')) or int(pid) == os.getpid():
            fo.delete_dataset(partial)


def export_mining_run(
    work_dir: str,
    name: Optional[str] = None,
    subsets: Optional[Sequence[str]] = None,
    overwrite: bool = False,
    database_uri: Optional[str] = None,
    progress: bool = True,
) -> dict:
    """Write the mining run in ``work_dir`` as the grouped FiftyOne dataset ``name``.

    Args:
        work_dir (str): a finished ``tools/mine.py`` work dir.
        name (str, optional): the dataset's name; default ``default_dataset_name(work_dir)``.
        subsets (list[str], optional): the subsets (``subsets/nuscenes_infos_train_<name>.pkl``)
            to mark on the samples and save views of; default all of them.
        overwrite (bool): replace a dataset of that name; without it an existing one is an error.
        database_uri (str, optional): a MongoDB to write to instead of FiftyOne's own ``mongod``.
        progress (bool): progress bars.

    Returns:
        dict: the dataset's name and what it holds (groups, slices, detections, views, index).
    """
    require_mining_outputs(work_dir, (FRAMES_FILE, CROPS_FILE, CONCEPTS_FILE, MANIFEST_FILE))
    name = name or default_dataset_name(work_dir)
    memberships = _memberships(work_dir, subsets)
    fo = connect(database_uri)
    if fo.dataset_exists(name) and not overwrite:
        raise FileExistsError(f'FiftyOne dataset {name!r} exists: --overwrite replaces it, --name gives another')
    _sweep_partials(fo, name)

    frames = pq.read_table(os.path.join(work_dir, FRAMES_FILE))
    skipped = frames.num_rows
    frames = frames.filter(pc.equal(frames.column('status'), FRAME_STATUS_OK))
    skipped -= frames.num_rows
    frames = frames.to_pandas().sort_values(['sample_idx', 'camera'], kind='stable')
    crops = _read_crops(work_dir)
    crops_of = crops.groupby(['sample_token', 'camera'], sort=False).indices
    embeddings = np.load(os.path.join(work_dir, EMBEDDINGS_FILE), mmap_mode='r')
    if len(embeddings) != len(crops):
        raise ValueError(f'{work_dir}: {EMBEDDINGS_FILE} has {len(embeddings)} rows for {len(crops)} crops')
    cameras = sorted(frames.camera.unique())
    if not cameras:
        raise ValueError(f'{work_dir}: no readable frame to export')

    partial = f'{name}{_PARTIAL}{os.getpid()}'
    dataset = fo.Dataset(partial)  # non-persistent until complete
    default_slice = 'CAM_FRONT' if 'CAM_FRONT' in cameras else cameras[0]
    dataset.add_group_field(GROUP_FIELD, default=default_slice)
    crop_rows: List[np.ndarray] = []
    row_of_position = crops.row.to_numpy()  # embeddings.npy row of each crop, once, not per frame

    def samples() -> Iterator:
        group = None
        for frame in frames.itertuples(index=False):
            if group is None or group[0] != frame.sample_token:
                group = (frame.sample_token, fo.Group())
            rows = crops_of.get((frame.sample_token, frame.camera), np.zeros(0, np.int64))
            crop_rows.append(row_of_position[rows])
            reasons = {s: m[frame.sample_token] for s, m in memberships.items() if frame.sample_token in m}
            yield fo.Sample(
                filepath=os.path.abspath(frame.img_path),
                **{GROUP_FIELD: group[1].element(frame.camera)},
                sample_token=frame.sample_token,
                scene_token=frame.scene_token,
                camera=frame.camera,
                sample_idx=int(frame.sample_idx),
                timestamp=int(frame.timestamp),
                subsets=sorted(reasons),
                subset_reasons={s: r['reason'] for s, r in reasons.items()},
                slot_concepts={s: r['concept'] for s, r in reasons.items() if r.get('concept')},
                **{DETECTIONS_FIELD: _detections(fo, crops.iloc[rows], int(frame.width), int(frame.height))},
            )

    sample_ids = dataset.add_samples(samples(), progress=progress)
    index = _similarity_index(fo, dataset, sample_ids, crop_rows, embeddings, progress)
    views = _save_views(fo, dataset, memberships, crops)
    dataset.info['conceptminer3d'] = dict(work_dir=os.path.abspath(work_dir), subsets=sorted(memberships))
    dataset.save()

    if fo.dataset_exists(name):
        fo.delete_dataset(name)
    dataset.name = name
    dataset.persistent = True
    return dict(
        name=name,
        groups=int(frames.sample_token.nunique()),
        slices={c: int((frames.camera == c).sum()) for c in cameras},
        frames_skipped=int(skipped),
        detections=int(sum(len(r) for r in crop_rows)),
        subsets=sorted(memberships),
        saved_views=views,
        similarity_index=index,
    )


def _similarity_index(fo, dataset, sample_ids, crop_rows, embeddings, progress: bool) -> Optional[str]:
    """Index the crops by the run's own CLIP embeddings, for ``sort_by_similarity``.
    A run without image embeddings (the annotation source) gets none."""
    if embeddings.ndim != 2 or not embeddings.shape[1]:
        return None
    import fiftyone.brain as fob

    by_sample = {sid: np.asarray(embeddings[rows], np.float32) for sid, rows in zip(sample_ids, crop_rows) if len(rows)}
    fob.compute_similarity(
        dataset.select_group_slices(media_type='image'),
        patches_field=DETECTIONS_FIELD,
        embeddings=by_sample,
        brain_key=SIMILARITY_BRAIN_KEY,
        backend='sklearn',
        # FiftyOne's sklearn index centres the embeddings first; Euclidean distance ignores the
        # centring and, on our unit vectors, ranks as cosine does: the order our own code sees.
        metric='euclidean',
        progress=progress,
    )
    return SIMILARITY_BRAIN_KEY


def _save_views(fo, dataset, memberships: Dict[str, dict], crops: pd.DataFrame) -> List[str]:
    from fiftyone import ViewField as F

    names = []
    for subset in sorted(memberships):
        names.append(f'subset-{subset}')
        dataset.save_view(names[-1], dataset.match(F('subsets').contains(subset)))
    for concept in sorted(crops.concept[crops.concept_group == GROUP_TARGET].dropna().unique()):
        names.append(f'target-{concept}')
        target = (F('concept') == concept) & (F('concept_group') == GROUP_TARGET)
        # Flattened: a grouped view filters the default slice only, and a crop is on one camera.
        dataset.save_view(
            names[-1], dataset.select_group_slices(media_type='image').filter_labels(DETECTIONS_FIELD, target)
        )
    return names


def crops_by_similarity(dataset, crop_id: str, k: int = 10) -> List[str]:
    """The crop ids of the ``k`` crops most like ``crop_id`` by the export's similarity index,
    nearest first (the crop itself first): what the App's "sort by similarity" shows."""
    from fiftyone import ViewField as F

    patches = dataset.select_group_slices(media_type='image').to_patches(DETECTIONS_FIELD)
    query = patches.match(F(f'{DETECTIONS_FIELD}.crop_id') == crop_id)
    if not len(query):
        raise KeyError(f'no crop {crop_id!r} in dataset {dataset.name!r}')
    label_id = query.first()[DETECTIONS_FIELD].id
    ranked = patches.sort_by_similarity(label_id, k=k, brain_key=SIMILARITY_BRAIN_KEY)
    return ranked.values(f'{DETECTIONS_FIELD}.crop_id')


__all__ = [
    'DETECTIONS_FIELD',
    'SIMILARITY_BRAIN_KEY',
    'crops_by_similarity',
    'default_dataset_name',
    'export_mining_run',
]
