#!/usr/bin/env bash
# Shared by slurm_train.sh and slurm_test.sh: run tools/SCRIPT as GPUS Slurm tasks (one per GPU) through srun,
# with mmengine's slurm launcher (ranks and the master address come from srun's variables).
# Usage: bash tools/slurm_launch.sh PARTITION JOB_NAME SCRIPT [script arguments]
# Environment (defaults as in OpenMMLab's scripts):
#   GPUS=8             tasks in all (one process per GPU)
#   GPUS_PER_NODE=8    tasks per node (at most GPUS)
#   CPUS_PER_TASK=5    CPU cores per task (data loading workers)
#   GRES=gpu:N         generic resources per node; set GRES= (empty) on CPU-only partitions
#   SRUN_ARGS          extra srun options, e.g. "--quotatype=auto" or "--time=2-00:00:00"
#   MASTER_PORT=29500  rendezvous port on the first node
#   PYTHON             interpreter (default: .venv/bin/python if present, else python)
set -euo pipefail
PARTITION=$1
JOB_NAME=$2
SCRIPT=$3
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON=${PYTHON:-$([[ -x "$ROOT/.venv/bin/python" ]] && echo "$ROOT/.venv/bin/python" || echo python)}
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-$(( GPUS < 8 ? GPUS : 8 ))}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
GRES=${GRES-gpu:$GPUS_PER_NODE}
read -r -a EXTRA_SRUN_ARGS <<< "${SRUN_ARGS:-}"

PYTHONPATH="$ROOT:${PYTHONPATH:-}" exec srun -p "$PARTITION" --job-name="$JOB_NAME" ${GRES:+--gres="$GRES"} \
    --ntasks="$GPUS" --ntasks-per-node="$GPUS_PER_NODE" --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=1 \
    "${EXTRA_SRUN_ARGS[@]}" "$PYTHON" -u "$ROOT/tools/$SCRIPT" "${@:4}" --launcher slurm
