"""tools/build_bevfusion_ops.py: the flags it builds with and what it says when it cannot."""

import os
import subprocess
import sys

import pytest
from torch.utils.cpp_extension import CUDA_HOME

from conceptminer3d.bevfusion_ops import build_bev_pool, check_bev_pool, cuda_arch_flags

from helpers import REPO


def test_arch_flags_include_hopper_and_ptx():
    assert cuda_arch_flags(['8.0', '9.0+PTX']) == [
        '-gencode=arch=compute_80,code=sm_80',
        '-gencode=arch=compute_90,code=sm_90',
        '-gencode=arch=compute_90,code=compute_90',
    ]
    with pytest.raises(ValueError, match='9.0'):
        cuda_arch_flags(['hopper'])


def _fake_checkout(root):
    package = root / 'projects' / 'BEVFusion' / 'bevfusion' / 'bev_pool'
    (package / 'src').mkdir(parents=True)
    for name in ('bev_pool.cpp', 'bev_pool_cuda.cu'):
        (package / 'src' / name).write_text('// sources of the checkout\n')
    return package


def test_check_tells_a_built_op_from_a_missing_one(tmp_path):
    package = _fake_checkout(tmp_path)
    assert 'No module named' in check_bev_pool(str(tmp_path))
    (package / 'bev_pool_ext.py').write_text('')  # stands in for the compiled module
    assert check_bev_pool(str(tmp_path)) is None


def test_build_says_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match='git clone -b v1.4.0'):
        build_bev_pool(str(tmp_path), ['9.0'])
    _fake_checkout(tmp_path)
    if CUDA_HOME is None:  # this machine: no CUDA toolkit
        with pytest.raises(RuntimeError, match='nvcc'):
            build_bev_pool(str(tmp_path), ['9.0'])
    child = subprocess.run(
        [sys.executable, os.path.join(REPO, 'tools', 'build_bevfusion_ops.py'), str(tmp_path), '--check'],
        capture_output=True,
        text=True,
    )
    assert child.returncode == 1 and 'NOT built' in child.stdout
