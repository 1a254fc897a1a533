#!/usr/bin/env bash
# Usage: [GPUS=8 ...] bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py options]
# (environment: see tools/slurm_launch.sh)
set -euo pipefail
if [[ $# -lt 4 ]]; then
    echo "usage: [GPUS=8 ...] bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py options]" >&2
    exit 2
fi
exec bash "$(dirname "$0")/slurm_launch.sh" "$1" "$2" train.py "$3" --work-dir "$4" "${@:5}"
