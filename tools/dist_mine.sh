#!/usr/bin/env bash
# Mine with NUM_GPUS processes, as mmdet3d's dist_train.sh trains (environment: tools/torchrun.sh):
#   bash tools/dist_mine.sh CONFIG NUM_GPUS --data-root DIR --ann-file PKL --work-dir DIR [args]
# Each rank mines its share of the images; rank 0 then runs the global stages and writes the
# outputs, the same as one process's.
set -euo pipefail
exec bash "$(dirname "$0")/torchrun.sh" "$2" mine.py "$1" "${@:3}" --launcher pytorch
