"""Mined training subsets ("Random r% + Target t%") and their filtered GT databases."""
from .builder import SUBSET_DIR, SUBSET_MANIFEST, build_subsets, subset_dbinfos, subset_infos
from .selection import SubsetSpec, select_mined, select_random

__all__ = ['SUBSET_DIR', 'SUBSET_MANIFEST', 'SubsetSpec', 'build_subsets', 'select_mined', 'select_random',
           'subset_dbinfos', 'subset_infos']
