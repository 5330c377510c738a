"""The toy nuScenes world and the toy mining models: fixtures for the demo, the tests and the
study's ``--quick`` and toy worlds, beside the product (``conceptminer3d``), which never imports
them. ``world``: the generator of a small nuScenes in the real on-disk format; ``models``: tiny
random-initialised models of the real architectures, and small models trained on a toy world;
``quick``: the tiny world and models of ``tools/benchmark.py --quick``.
"""
