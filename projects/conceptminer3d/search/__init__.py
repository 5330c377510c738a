"""Search a mining run's crops by text, example crop or image file, and mine a subset from a query.

Built on the mining run's tables and embeddings (``mining.contracts``) and on the subsets
package (a query subset is written like the mined ones); nothing below imports this package.
"""

from .crop_search import INDEX_KINDS, SEARCH_FILE, MiningRunEmbeddings, search_mining_run, write_search_results
from .index import ExactCropIndex, IvfCropIndex, load_or_build_index
from .query_subset import REASON_QUERY, write_query_subset

__all__ = [
    'INDEX_KINDS',
    'REASON_QUERY',
    'SEARCH_FILE',
    'ExactCropIndex',
    'IvfCropIndex',
    'MiningRunEmbeddings',
    'load_or_build_index',
    'search_mining_run',
    'write_query_subset',
    'write_search_results',
]
