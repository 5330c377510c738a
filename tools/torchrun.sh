#!/usr/bin/env bash
# What tools/dist_{mine,train,test}.sh share: run a tool under torchrun with NUM_GPUS processes
# on this machine, or on several machines with NNODES, NODE_RANK, MASTER_ADDR and PORT set.
#   bash tools/torchrun.sh NUM_GPUS TOOL.py [tool arguments] --launcher pytorch
set -euo pipefail
GPUS=$1
TOOL=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}

PYTHONPATH="$(dirname "$0")/..":${PYTHONPATH:-} \
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$(dirname "$0")/$TOOL" "${@:3}"
