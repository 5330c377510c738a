"""Mined training subsets ("Random r% + Target t%"), their random and coreset baselines, their
filtered GT databases, and how many rare objects they hold (``evaluation``, from the 3D labels).

Built on the mining package's tables (``mining.contracts``); the mining package never imports
this one. ``conceptminer3d.apis.build_subsets_from_config`` joins the two.
"""

from .baselines import select_coreset, select_random
from .builder import (
    SUBSET_DIR,
    SUBSET_MANIFEST,
    build_subsets,
    subset_dbinfos,
    subset_infos,
    subset_manifest_path,
    subset_membership,
    subset_names,
    subset_paths,
    write_subset,
)
from .coverage import SqrtCoverage
from .selection import SubsetSpec, select_mined

__all__ = [
    'SUBSET_DIR',
    'SUBSET_MANIFEST',
    'SqrtCoverage',
    'SubsetSpec',
    'build_subsets',
    'select_coreset',
    'select_mined',
    'select_random',
    'subset_dbinfos',
    'subset_infos',
    'subset_manifest_path',
    'subset_membership',
    'subset_names',
    'subset_paths',
    'write_subset',
]
