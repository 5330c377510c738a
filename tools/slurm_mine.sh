#!/usr/bin/env bash
# Mine on a Slurm cluster, as mmdet3d's slurm_train.sh trains:
#   GPUS=16 bash tools/slurm_mine.sh PARTITION JOB_NAME CONFIG --data-root DIR --ann-file PKL --work-dir DIR
# The work dir must be on a file system every node sees: ranks hand work over through files there.
set -euo pipefail
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
PYTHON=${PYTHON:-python}

# --kill-on-bad-exit: a rank that fails stops the job, so no rank waits for it.
PYTHONPATH="$(dirname "$0")/..":${PYTHONPATH:-} \
srun -p "${PARTITION}" \
    --job-name="${JOB_NAME}" \
    --gres=gpu:"${GPUS_PER_NODE}" \
    --ntasks="${GPUS}" \
    --ntasks-per-node="${GPUS_PER_NODE}" \
    --cpus-per-task="${CPUS_PER_TASK}" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    "$PYTHON" -u "$(dirname "$0")/mine.py" "$CONFIG" --launcher slurm "${@:4}"
