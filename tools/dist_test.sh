#!/usr/bin/env bash
# Evaluate a checkpoint with NUM_GPUS processes, as mmdet3d's dist_test.sh (environment:
# tools/torchrun.sh):
#   bash tools/dist_test.sh CONFIG CHECKPOINT NUM_GPUS [--work-dir DIR] [--cfg-options k=v ...]
set -euo pipefail
exec bash "$(dirname "$0")/torchrun.sh" "$3" test.py "$1" "$2" "${@:4}" --launcher pytorch
