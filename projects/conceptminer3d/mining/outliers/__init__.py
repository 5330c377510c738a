"""The outlier detectors (scikit-learn estimators, ``detectors``), the neighbour search the
LOF and kNN detectors share (``neighbours``) and how a run scores and combines them
(``scoring``).

Layer 3 of ``conceptminer3d.mining``, beside ``stages``: imports ``contracts``, ``runtime`` and
``models``.
"""

from .detectors import IsolationForestOutliers, KnnDistanceOutliers, LocalOutlierFactorOutliers

__all__ = ['IsolationForestOutliers', 'KnnDistanceOutliers', 'LocalOutlierFactorOutliers']
