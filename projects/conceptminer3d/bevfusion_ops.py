"""Build and check the CUDA op of mmdetection3d's BEVFusion project (``bev_pool_ext``).

BEVFusion is not in the mmdet3d wheel: it lives in the source checkout's
``projects/BEVFusion``. Its ``setup.py`` is not the way to build it here:

- run as ``setup.py develop`` from the checkout with setuptools >= 80, it delegates to
  ``pip install -e .`` of the checkout, which installs mmdetection3d itself and never builds
  ``bev_pool_ext``, so ``import projects.BEVFusion.bevfusion`` fails;
- it hard-codes ``-gencode`` flags up to sm_86, and torch's extension builder then ignores
  ``TORCH_CUDA_ARCH_LIST``: no kernel for an H100 (sm_90) or newer.

``build_bev_pool`` compiles the same sources in place (next to ``bev_pool.py``) for the
architectures asked for, and ``check_bev_pool`` says whether the op is importable.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import List, Optional, Sequence

__all__ = ['BEV_POOL_MODULE', 'build_bev_pool', 'check_bev_pool', 'cuda_arch_flags', 'default_cuda_archs']

BEV_POOL_MODULE = 'projects.BEVFusion.bevfusion.bev_pool.bev_pool_ext'
_SOURCES = ('src/bev_pool.cpp', 'src/bev_pool_cuda.cu')
# BEVFusion's own -D flags for nvcc (its setup.py), kept so that the kernels compile as upstream's.
_NVCC_DEFINES = ['-D__CUDA_NO_HALF_OPERATORS__', '-D__CUDA_NO_HALF_CONVERSIONS__', '-D__CUDA_NO_HALF2_OPERATORS__']


def default_cuda_archs() -> List[str]:
    """``TORCH_CUDA_ARCH_LIST`` when set (``'8.0;9.0'``), else the visible GPUs' own."""
    listed = os.environ.get('TORCH_CUDA_ARCH_LIST')
    if listed:
        return [a for a in listed.replace(',', ';').replace(' ', ';').split(';') if a]
    import torch

    if not torch.cuda.is_available():
        return []
    return sorted({'{}.{}'.format(*torch.cuda.get_device_capability(i)) for i in range(torch.cuda.device_count())})


def cuda_arch_flags(archs: Sequence[str]) -> List[str]:
    """nvcc ``-gencode`` flags for ``'9.0'``-style architectures (``'+PTX'`` adds PTX for
    newer GPUs), as torch spells them."""
    flags = []
    for arch in archs:
        number = arch.replace('+PTX', '').replace('.', '')
        if not number.isdigit():
            raise ValueError(f'CUDA architecture {arch!r}: expected e.g. 8.0, 9.0 or 9.0+PTX')
        flags.append(f'-gencode=arch=compute_{number},code=sm_{number}')
        if arch.endswith('+PTX'):
            flags.append(f'-gencode=arch=compute_{number},code=compute_{number}')
    return flags


def check_bev_pool(checkout: str) -> Optional[str]:
    """None when ``bev_pool_ext`` imports from ``checkout`` (in a fresh interpreter, so that a
    half-built module cannot hide), else why not."""
    child = subprocess.run(
        [sys.executable, '-c', f'import {BEV_POOL_MODULE}'],
        cwd=checkout,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [checkout, os.environ.get('PYTHONPATH')]))),
        capture_output=True,
        text=True,
    )
    if child.returncode == 0:
        return None
    return (child.stderr.strip().splitlines() or ['import failed'])[-1]


def build_bev_pool(checkout: str, archs: Optional[Sequence[str]] = None) -> str:
    """Compile ``bev_pool_ext`` in place inside ``checkout`` for ``archs`` (default:
    ``default_cuda_archs``); returns the path of the built module."""
    package = os.path.join(checkout, *BEV_POOL_MODULE.split('.')[:-1])
    missing = [s for s in _SOURCES if not os.path.isfile(os.path.join(package, s))]
    if missing:
        raise FileNotFoundError(
            f'{checkout} is not an mmdetection3d v1.4 checkout with projects/BEVFusion: {missing} not found under '
            f'{package} (git clone -b v1.4.0 https://github.com/open-mmlab/mmdetection3d {checkout})'
        )
    archs = list(archs or default_cuda_archs())
    if not archs:
        raise RuntimeError('no CUDA architecture to build for: no GPU is visible; set TORCH_CUDA_ARCH_LIST, e.g. 9.0')
    from torch.utils.cpp_extension import CUDA_HOME

    if CUDA_HOME is None or shutil.which(os.path.join(CUDA_HOME, 'bin', 'nvcc')) is None:
        raise RuntimeError(
            'nvcc not found (CUDA_HOME unset or without bin/nvcc): install the CUDA toolkit matching torch '
            '(torch.version.cuda) and set CUDA_HOME'
        )
    from setuptools import setup
    from torch.utils.cpp_extension import BuildExtension, CUDAExtension

    extension = CUDAExtension(
        name=BEV_POOL_MODULE,
        sources=[os.path.join(*BEV_POOL_MODULE.split('.')[:-1], s) for s in _SOURCES],
        define_macros=[('WITH_CUDA', None)],
        extra_compile_args={'cxx': [], 'nvcc': _NVCC_DEFINES + cuda_arch_flags(archs)},
    )
    here = os.getcwd()
    os.chdir(checkout)  # setuptools builds relative to the working directory
    try:
        setup(
            name='bev_pool',
            ext_modules=[extension],
            cmdclass={'build_ext': BuildExtension},
            script_args=['build_ext', '--inplace'],
            zip_safe=False,
        )
    finally:
        os.chdir(here)
    built = [f for f in os.listdir(package) if f.startswith('bev_pool_ext') and f.endswith('.so')]
    if not built:
        raise RuntimeError(f'the build finished but left no bev_pool_ext*.so in {package}')
    return os.path.join(package, built[0])
