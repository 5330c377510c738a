"""Does training on the mined 20% beat a random 20%? Train and compare arms × seeds, or collect
finished runs (logic in ``conceptminer3d.study``; ``--help`` for the options).

    python tools/benchmark.py --arms full random20 mined20 --seeds 0 1 2 [--iters N | --epochs N] \
        --world toy|nuscenes --work-dir DIR
    python tools/benchmark.py --collect WORK_DIR... [--work-dir OUT]
    python tools/benchmark.py --quick --work-dir DIR
"""

from conceptminer3d.cli import run_tool
from conceptminer3d.study.cli import main as study_main
from conceptminer3d_toy.quick import prepare_quick


def main():
    return study_main(prepare_quick=prepare_quick)  # --quick's tiny world and models are the toy package's


if __name__ == '__main__':
    run_tool(main)
