"""What a user tagged in FiftyOne, back as a subset the training configs read.

The mined subsets stay the source of truth: a tag becomes one more subset beside them
(``subsets/nuscenes_infos_train_<tag>.pkl`` with its filtered GT database, and
``subset_manifest_<tag>.json`` saying where it came from), so a hand-curated subset trains with
the same configs (``SubsetNuScenesDataset(mining_dir=..., subset='<tag>')``).
"""

from __future__ import annotations

from typing import Optional

from ..subsets.listed import check_subset_name, write_listed_subset
from .database import connect
from .fiftyone_dataset import DETECTIONS_FIELD, default_dataset_name

REASON_TAGGED = 'tagged'


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
    check_subset_name(tag, work_dir, overwrite)
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

    selected = [dict(sample_token=token, reason=REASON_TAGGED) for token in sorted(tagged)]
    source = dict(fiftyone_dataset=name, tag=tag)
    try:
        return write_listed_subset(work_dir, tag, selected, source, train_pkl=train_pkl, overwrite=overwrite)
    except ValueError as err:
        raise ValueError(f'{err} ({name!r} was exported from another run)') from None
