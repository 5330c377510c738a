"""Speed benchmarks of ConceptMiner3D: kept outside the product package, as scikit-learn keeps
``benchmarks/`` outside ``sklearn/``; the product never imports them.

- ``synthetic``: data that stands in for a big run (CLIP-like embeddings, a mining dir of
  nuScenes train's size, a run replicated N times);
- ``mining_speed``: the pipeline's per-image stage against bare model compute, the whole
  ``tools/mine.py`` process and a user's minimal script (``tools/benchmark_mining.py``);
- ``outlier_speed``: the outlier detectors at 10k-1M crops (``tools/benchmark_mining.py``);
- ``selection_speed``: ``build_subsets`` at nuScenes train's size (``tools/benchmark_selection.py``);
- ``search_speed``: crop search, exact and approximate (``tools/benchmark_search.py``).

The training study (``tools/benchmark.py``: does a mined subset train a better detector?) is a
product feature, not a speed benchmark: it lives in ``conceptminer3d.study``.
"""
