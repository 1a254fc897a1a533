#!/usr/bin/env bash
# Create .venv/ in the repository root and install the pinned OpenMMLab 2.x stack plus mmlightvit (editable).
#
# Idempotent: when the stamp in .venv/ matches this script and setup.py and the stack imports, it returns in
# seconds. mmcv is compiled from source (no wheel exists for torch 2.13); pip caches the built wheel, so only the
# first install on a machine pays for the build (~9 min on 2 cores).
#
# Environment: PYTHON (interpreter for the venv, default python3.11 or python3), MMLIGHTVIT_VENV (default .venv).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${MMLIGHTVIT_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
STAMP="$VENV/.mmlightvit-install-stamp"
STAMP_VALUE="$(cat tools/install.sh setup.py requirements/*.txt | sha256sum | cut -d' ' -f1)"

log() { printf '[install] %s\n' "$*"; }

link_for_mim() {
    # mim looks for tools/, configs/ and model-index.yml under site-packages/mmlightvit/.mim (it predates PEP 660
    # editable installs, which leave no folder there): a link to the checkout's package lets
    # `mim train|test|download mmlightvit ...` find them.
    local site
    site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    if [[ ! -e "$site/mmlightvit" ]]; then
        ln -s "$ROOT/mmlightvit" "$site/mmlightvit"
    fi
}

stack_imports() {
    "$VENV/bin/python" - <<'PY' 2>/dev/null
import mmcv, mmcv.ops, mmdet, mmengine, mmpretrain, mmseg, torch, mmlightvit, mim  # noqa: F401
assert mmcv.__version__ == '2.1.0', mmcv.__version__
assert torch.__version__.startswith('2.13.0'), torch.__version__
PY
}

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_VALUE" ]] && stack_imports; then
    link_for_mim
    log "environment in $VENV is up to date"
    exit 0
fi

start=$(date +%s)
if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV"
fi
pip_install() {
    # Some machines' pip.conf names file:// indexes that do not exist; their warnings would drown the output.
    "$VENV/bin/python" -m pip install --disable-pip-version-check "$@" 2>&1 \
        | { grep -v "^WARNING: Location 'file:" || true; }
}

# torch first and pinned: any looser requirement would pull a multi-GB CUDA build.
pip_install -q torch==2.13.0
pip_install -q -r requirements/build.txt

if "$VENV/bin/python" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '2.1.0'" 2>/dev/null; then
    log "mmcv 2.1.0 with ops already installed"
else
    log "building mmcv 2.1.0 with ops (first time on this machine: ~9 min; later installs reuse pip's wheel cache)"
    MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" pip_install --no-build-isolation mmcv==2.1.0
fi

pip_install -q -r requirements/runtime.txt -r requirements/deploy.txt -r requirements/tests.txt
# timm is the reference implementation in the tests. It declares torchvision, which has no CPU build for
# torch 2.13 on PyPI (and would pull another torch), so it goes in without its declared dependencies; the rest
# of what it needs is in requirements/tests.txt.
pip_install -q --no-deps timm==1.0.31
# The fastervit package (FasterViT's reference implementation in the tests) declares torchvision as well.
pip_install -q --no-deps fastervit==1.0.0
pip_install -q --no-deps openmim==0.3.9  # see requirements/tools.txt
pip_install -q --no-build-isolation --no-deps -e .
link_for_mim

stack_imports || { log "the installed stack does not import; see the errors above"; exit 1; }
echo "$STAMP_VALUE" > "$STAMP"
log "done in $(( $(date +%s) - start )) s"
