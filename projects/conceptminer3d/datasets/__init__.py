from .subset_cbgs_dataset import SubsetCBGSDataset
from .subset_nuscenes_dataset import SubsetNuScenesDataset, with_db_info_path

__all__ = ['SubsetCBGSDataset', 'SubsetNuScenesDataset', 'with_db_info_path']
