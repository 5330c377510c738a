"""Build BEVFusion's CUDA op (bev_pool_ext) inside an mmdetection3d v1.4 checkout, or check it.

    python tools/build_bevfusion_ops.py third_party/mmdetection3d [--arch 8.0 9.0]
    python tools/build_bevfusion_ops.py third_party/mmdetection3d --check

Why not BEVFusion's own setup.py: conceptminer3d/bevfusion_ops.py. Default architectures:
TORCH_CUDA_ARCH_LIST, else those of the visible GPUs (9.0 for an H100 / H200).
"""

import argparse
import sys

from conceptminer3d.bevfusion_ops import build_bev_pool, check_bev_pool, cuda_arch_flags, default_cuda_archs
from conceptminer3d.cli import run_tool


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('checkout', help='the mmdetection3d source checkout (holds projects/BEVFusion)')
    p.add_argument('--arch', nargs='+', help='CUDA architectures, e.g. 8.0 9.0 (9.0+PTX adds PTX)')
    p.add_argument('--check', action='store_true', help='only say whether bev_pool_ext imports')
    args = p.parse_args()
    if not args.check:
        archs = args.arch or default_cuda_archs()
        print(f'building bev_pool_ext for {archs}: {" ".join(cuda_arch_flags(archs))}')
        print(f'built {build_bev_pool(args.checkout, archs)}')
    problem = check_bev_pool(args.checkout)
    if problem:
        print(f'bev_pool_ext is NOT built in {args.checkout}: {problem}')
        sys.exit(1)
    print(f'bev_pool_ext is built in {args.checkout}')


if __name__ == '__main__':
    run_tool(main)
