"""Where the models come from and what they are: names and paths resolved offline, one module
per model family (``yolo_models``, ``open_clip_models``, ``hf_models``) over what they share, the
models dir among it (``model_loading``), devices, dtypes and batch sizes (``devices``), and a
model's identity for the caches and the run fingerprint (``identity``).

Layer 2 of ``conceptminer3d.mining``: imports ``contracts`` and ``runtime`` only.
"""
