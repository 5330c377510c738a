"""What the mining pipeline computes, one module per stage: frames from an info pickle
(``frames``), 2D boxes (``detection``), crops (``crops``), CLIP embeddings (``embedding``),
captions (``captioning``) and concept scores and groups (``concepts``).

Layer 3 of ``conceptminer3d.mining``, beside ``outliers``: imports ``contracts``, ``runtime``
and ``models``.
"""
