#!/usr/bin/env bash
# Usage: [GPUS=8 ...] bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py options]
# (environment: see tools/slurm_launch.sh)
set -euo pipefail
if [[ $# -lt 4 ]]; then
    echo "usage: [GPUS=8 ...] bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py options]" >&2
    exit 2
fi
exec bash "$(dirname "$0")/slurm_launch.sh" "$1" "$2" test.py "$3" "$4" "${@:5}"
