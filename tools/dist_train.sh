#!/usr/bin/env bash
# Train with NUM_GPUS processes, as mmdet3d's dist_train.sh (environment: tools/torchrun.sh):
#   bash tools/dist_train.sh CONFIG NUM_GPUS [--work-dir DIR] [--resume] [--cfg-options k=v ...]
set -euo pipefail
exec bash "$(dirname "$0")/torchrun.sh" "$2" train.py "$1" "${@:3}" --launcher pytorch
