#!/usr/bin/env bash
# Install (idempotent) and run the test suite on the CPU: bash tools/run_tests.sh [pytest options]
#
# Two pytest-xdist workers (one per core of the 2-core machine), each test file on one worker so that its
# module-level fixtures run once; each worker computes with one thread (tests/conftest.py). Options given here
# come after these, so `-n 0` runs the suite in one process and `-n 4` on four workers. A worker that dies (a crash in
# native code) ends the run with the test it was running named: pytest-xdist 3.8's replacement worker waits forever
# under --dist loadfile (pytest-dev/pytest-xdist#784).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash tools/install.sh
exec .venv/bin/python -m pytest tests -n 2 --dist loadfile --max-worker-restart 0 "$@"
