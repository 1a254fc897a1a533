#!/usr/bin/env bash
# Shared by dist_train.sh and dist_test.sh: run tools/SCRIPT under torchrun with NUM_PROCS processes per node.
# Usage: bash tools/dist_launch.sh NUM_PROCS SCRIPT [script arguments]
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR and PORT as in OpenMMLab's scripts. Without CUDA the processes run
# on the CPU over gloo. PYTHON picks the interpreter (default: .venv/bin/python if present, else python).
set -euo pipefail
NUM_PROCS=$1
SCRIPT=$2
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON=${PYTHON:-$([[ -x "$ROOT/.venv/bin/python" ]] && echo "$ROOT/.venv/bin/python" || echo python)}

PORT=${PORT:-29500}
if [[ "${NODE_RANK:-0}" == 0 ]] && ! "$PYTHON" -c "import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('', int(sys.argv[1])))" \
        "$PORT" 2>/dev/null; then
    echo "error: port $PORT is in use on this machine (another distributed run?); start with PORT=<free port>." >&2
    exit 1
fi

PYTHONPATH="$ROOT:${PYTHONPATH:-}" exec "$PYTHON" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --nproc_per_node="$NUM_PROCS" --master_port="$PORT" \
    "$ROOT/tools/$SCRIPT" "${@:3}" --launcher pytorch
