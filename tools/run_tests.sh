#!/usr/bin/env bash
# Install (idempotent) and run the test suite on the CPU: bash tools/run_tests.sh [pytest options]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash tools/install.sh
exec .venv/bin/python -m pytest tests "$@"
