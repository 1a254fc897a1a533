#!/usr/bin/env bash
# Usage: [GPUS=8 ...] bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py options]
# (environment: see tools/slurm_launch.sh)
set -euo pipefail
exec bash "$(dirname "$0")/slurm_launch.sh" "$1" "$2" test.py "$3" "$4" "${@:5}"
