#!/usr/bin/env bash
# Create .venv/ in the repository root and install the pinned OpenMMLab 2.x stack plus mmlightvit (editable).
#
# Idempotent: when the stamp in .venv/ matches this script and setup.py and the stack imports, it returns in
# seconds. mmcv is compiled from source (no wheel exists for this torch); the built wheel is kept in a cache folder
# named after the torch version it was built against, so only the first install on a machine pays for the build
# (~9 min on 2 cores) and a wheel built against another torch is never reused.
#
# Environment: PYTHON (interpreter for the venv, default python3.11 or python3), MMLIGHTVIT_VENV (default .venv),
# MMLIGHTVIT_WHEEL_CACHE (where built mmcv wheels are kept, default ~/.cache/mmlightvit/wheels).
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

# torch and torchvision are pinned as a pair that PyPI publishes together and that runs on CPU-only machines as well
# as GPU ones (mmpretrain's models and timm import torchvision). x86_64 has only CUDA builds of the pair (they run on
# the CPU when no GPU is present); aarch64 has a CPU build. Keep in step with requirements/runtime.txt.
case "$(uname -m)" in
    aarch64|arm64) TORCH_VERSION=2.9.1; TORCHVISION_VERSION=0.24.1 ;;
    *) TORCH_VERSION=2.14.1; TORCHVISION_VERSION=0.29.1 ;;
esac

stack_imports() {
    "$VENV/bin/python" - "$TORCH_VERSION" "$TORCHVISION_VERSION" <<'PY' 2>/dev/null
import sys
import mmcv, mmcv.ops, mmdet, mmengine, mmpretrain.models, mmseg, timm, torch, torchvision, mmlightvit, mim  # noqa
import torchvision.ops
assert mmcv.__version__ == '2.1.0', mmcv.__version__
assert torch.__version__.split('+')[0] == sys.argv[1], torch.__version__
assert torchvision.__version__.split('+')[0] == sys.argv[2], torchvision.__version__
torchvision.ops.nms(torch.rand(2, 4), torch.rand(2), 0.5)  # the compiled ops load beside this torch
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

# torch and torchvision first and pinned, so that nothing later pulls another torch.
pip_install -q "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
pip_install -q -r requirements/build.txt

if "$VENV/bin/python" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '2.1.0'" 2>/dev/null; then
    log "mmcv 2.1.0 with ops already installed"
else
    # pip's own wheel cache is keyed by the source archive only: it would hand back a wheel built against another
    # torch (undefined symbols at import). This folder is keyed by the torch version as well.
    wheels="${MMLIGHTVIT_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmlightvit/wheels}/mmcv-2.1.0_torch-$TORCH_VERSION"
    if ! ls "$wheels"/mmcv-2.1.0-*.whl >/dev/null 2>&1; then
        log "building mmcv 2.1.0 with ops against torch $TORCH_VERSION (first time on this machine: ~9 min)"
        build="$(mktemp -d)"
        "$VENV/bin/python" -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
            -d "$build" mmcv==2.1.0 2>&1 | { grep -v "^WARNING: Location 'file:" || true; }
        tar -xzf "$build"/mmcv-2.1.0.tar.gz -C "$build"
        # mmcv 2.1.0 compiles its ops as C++17; torch >= 2.14's headers need C++20.
        sed -i 's/-std=c++17/-std=c++20/' "$build/mmcv-2.1.0/setup.py"
        mkdir -p "$wheels"
        MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" "$VENV/bin/python" -m pip wheel -q \
            --disable-pip-version-check --no-cache-dir --no-build-isolation --no-deps -w "$wheels" \
            "$build/mmcv-2.1.0" 2>&1 | { grep -v "^WARNING: Location 'file:" || true; }
        rm -rf "$build"
    fi
    pip_install -q --no-deps "$wheels"/mmcv-2.1.0-*.whl
fi

pip_install -q -r requirements/runtime.txt -r requirements/deploy.txt -r requirements/tests.txt
pip_install -q --no-deps openmim==0.3.9  # see requirements/tools.txt
pip_install -q --no-build-isolation --no-deps -e .
link_for_mim

stack_imports || { log "the installed stack does not import; see the errors above"; exit 1; }
echo "$STAMP_VALUE" > "$STAMP"
log "done in $(( $(date +%s) - start )) s"
