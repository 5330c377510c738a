"""A mining run in FiftyOne: exported as a grouped dataset (``fiftyone_dataset``), and what a
user tags there brought back as a subset (``tagged_subsets``). FiftyOne is an optional install
(``make fiftyone``); ``database`` imports it and says what to install when it is missing.

Built on the mining tables (``mining.contracts``) and the subsets (``subsets``); neither
imports this package.
"""

from .database import FiftyOneUnavailable, connect
from .fiftyone_dataset import default_dataset_name, export_mining_run
from .tagged_subsets import import_tagged_subset

__all__ = ['FiftyOneUnavailable', 'connect', 'default_dataset_name', 'export_mining_run', 'import_tagged_subset']
