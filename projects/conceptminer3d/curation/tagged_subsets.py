"""What a user tagged in FiftyOne, back as a subset the training configs read.

The mined subsets stay the source of truth: a tag becomes one more subset beside them
(``subsets/nuscenes_infos_train_<tag>.pkl`` with its filtered GT database, and
``subset_manifest_<tag>.json`` saying where it came from), so a hand-curated subset trains with
the same configs (``SubsetNuScenesDataset(mining_dir=..., subset='<tag>')``).
"""

from __future__ import annotations

import datetime
import os
import pickle
import re
from typing import Optional

from ..mining.contracts import write_json_atomic
from ..mining.frames import load_info_pickle
from ..subsets import SUBSET_DIR, subset_manifest_path, subset_names, write_subset
from ..subsets.evaluation import mined_dbinfos_pickle, mined_train_pickle
from .database import connect
from .fiftyone_dataset import DETECTIONS_FIELD, default_dataset_name

REASON_TAGGED = 'tagged'
_SUBSET_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]*$')


def import_tagged_subset(
    work_dir: str,
    tag: str,
    name: Optional[str] = None,
    train_pkl: Optional[str] = None,
    overwrite: bool = False,
    database_uri: Optional[str] = None,
) -> dict:
    """Write the samples tagged ``tag`` in the FiftyOne export of ``work_dir`` as subset ``tag``.

    A sample counts as tagged when any of its camera slices, or any box on them, has the tag.

    Args:
        work_dir (str): the mining work dir that was exported.
        tag (str): the FiftyOne tag; also the subset's name.
        name (str, optional): the dataset; default ``default_dataset_name(work_dir)``.
        train_pkl (str, optional): the train pickle that was mined; default: the one the run's
            subsets were built from.
        overwrite (bool): replace an existing subset of that name.
        database_uri (str, optional): as for the export.

    Returns:
        dict: the subset's manifest.
    """
    if not _SUBSET_NAME.match(tag):
        raise ValueError(f'tag {tag!r} cannot name a subset file: use letters, digits, "_", "-" and "."')
    if tag in subset_names(work_dir) and not overwrite:
        raise FileExistsError(f'subset {tag!r} exists in {os.path.join(work_dir, SUBSET_DIR)}: --overwrite replaces it')
    name = name or default_dataset_name(work_dir)
    fo = connect(database_uri)
    if not fo.dataset_exists(name):
        raise ValueError(f'no FiftyOne dataset {name!r}: export {work_dir} first (tools/export_fiftyone.py)')
    slices = fo.load_dataset(name).select_group_slices(media_type='image')
    tagged = set(slices.match_tags(tag).values('sample_token'))
    tagged |= set(slices.match_labels(tags=tag, fields=DETECTIONS_FIELD).values('sample_token'))
    if not tagged:
        raise ValueError(
            f'no sample or box of {name!r} is tagged {tag!r} (sample tags there: '
            f'{", ".join(sorted(slices.count_sample_tags())) or "none"})'
        )

    train_pkl = train_pkl or mined_train_pickle(work_dir)
    infos = load_info_pickle(train_pkl)
    position = {info['token']: i for i, info in enumerate(infos['data_list'])}
    unknown = tagged - set(position)
    if unknown:
        raise ValueError(
            f'{len(unknown)} tagged samples are not in {train_pkl}: {name!r} was exported from another run'
        )
    indices = sorted(position[t] for t in tagged)
    dbinfos_pkl = mined_dbinfos_pickle(work_dir)
    dbinfos = None
    if dbinfos_pkl:
        with open(dbinfos_pkl, 'rb') as f:
            dbinfos = pickle.load(f)
    paths = write_subset(os.path.join(work_dir, SUBSET_DIR), tag, infos, indices, dbinfos)
    manifest = dict(
        source=dict(fiftyone_dataset=name, tag=tag, imported=datetime.datetime.now().isoformat(timespec='seconds')),
        inputs=dict(train_pkl=os.path.abspath(train_pkl), dbinfos_pkl=dbinfos_pkl),
        outputs={k: os.path.basename(v) for k, v in paths.items()},
        num_train_samples=len(position),
        num_selected=len(indices),
        reasons={REASON_TAGGED: len(indices)},
        selected=[
            dict(sample_token=infos['data_list'][i]['token'], train_index=i, subset_index=p, reason=REASON_TAGGED)
            for p, i in enumerate(indices)
        ],
    )
    write_json_atomic(manifest, subset_manifest_path(work_dir, tag))
    return manifest
