"""The outlier detectors (scikit-learn estimators: what they share in ``base``, the isolation
forest in ``isolation_forest``, LOF and kNN distance in ``neighbour_detectors``), the neighbour
search the LOF and kNN detectors share (``neighbours``) and how a run scores and combines them
(``scoring``).

Layer 3 of ``conceptminer3d.mining``, beside ``stages``: imports ``contracts``, ``runtime`` and
``models``.
"""

from .isolation_forest import IsolationForestOutliers
from .neighbour_detectors import KnnDistanceOutliers, LocalOutlierFactorOutliers

__all__ = ['IsolationForestOutliers', 'KnnDistanceOutliers', 'LocalOutlierFactorOutliers']
