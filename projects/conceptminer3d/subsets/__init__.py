"""Mined training subsets ("Random r% + Target t%"), their random and coreset baselines, and their
filtered GT databases.

Built on the mining package's tables (``mining.contracts``); the mining package never imports
this one. ``conceptminer3d.apis.build_subsets_from_config`` joins the two.
"""

from .builder import SUBSET_DIR, SUBSET_MANIFEST, build_subsets, subset_dbinfos, subset_infos, subset_paths
from .selection import SubsetSpec, select_coreset, select_mined, select_random

__all__ = [
    'SUBSET_DIR',
    'SUBSET_MANIFEST',
    'SubsetSpec',
    'build_subsets',
    'select_coreset',
    'select_mined',
    'select_random',
    'subset_dbinfos',
    'subset_infos',
    'subset_paths',
]
