#!/usr/bin/env bash
# Usage: bash tools/dist_train.sh CONFIG NUM_PROCS [train.py options]   (environment: see tools/dist_launch.sh)
set -euo pipefail
if [[ $# -lt 2 ]]; then
    echo "usage: bash tools/dist_train.sh CONFIG NUM_PROCS [train.py options]" >&2
    exit 2
fi
exec bash "$(dirname "$0")/dist_launch.sh" "$2" train.py "$1" "${@:3}"
