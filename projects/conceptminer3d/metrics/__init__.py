from .nuscenes_metric import VectorizedNuScenesMetric

__all__ = ['VectorizedNuScenesMetric']
