"""How the mining stages run, whatever they compute: files written whole (``atomic_files``), one
writer per mining dir (``writer_lock``), the stage caches (``cache``, ``hashing``), one process or
many (``executors``), image decoding (``images``), the output tables assembled from the caches
(``assembly``) and what a run records about itself (``run_record``).

Layer 1 of ``conceptminer3d.mining`` (see its docstring): imports only ``mining/contracts.py``.
"""
