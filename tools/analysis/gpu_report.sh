#!/usr/bin/env bash
# The README's GPU numbers in one run: backbone latency and peak memory of one variant per family (fp32 / fp16 /
# bf16 autocast; eager, fused and torch.compile), TransNeXt-Tiny's attention paths at detection sizes (the same
# dtypes, eager and compiled), ONNX Runtime on CUDA where its CUDA provider exists, TensorRT engines (float32,
# float16, INT8) of the same backbones where the tensorrt package is installed, and a short
# real mixed-precision training + evaluation of the demo Mask R-CNN (RepViT-M1.1). Writes OUT_DIR/gpu_report.md.
#
#   bash tools/analysis/gpu_report.sh [OUT_DIR]          # default work_dirs/gpu_report
#
# Environment:
#   PYTHON   interpreter with a CUDA build of torch (default: .venv/bin/python if it exists, else python3)
#   WHEELS   a folder of wheels / sdists to install first, offline (pip --no-index --find-links): for a machine
#            without network, e.g. mmengine, mmcv 2.1.0 (sdist: built there with its CUDA ops), mmdet, mmsegmentation
#            and their pure-Python dependencies. Without mmcv's ops the training part is skipped and says so.
#   DEVICE   cuda (default); cpu runs the same steps on the CPU with QUICK=1 sizes, to check the script.
#   QUICK    1: tiny shapes and one short epoch (a check of the script, not numbers to report).
#   TARGETS  the backbones to time (default: RepViT:m1.1 EdgeNeXt:small FasterViT:0 TransNeXt:micro).
# Each part has a time limit (PART_TIMEOUT seconds, default 240), so a stuck step cannot eat a short GPU lease.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
OUT_DIR="$(mkdir -p "${1:-work_dirs/gpu_report}" && cd "${1:-work_dirs/gpu_report}" && pwd)"
PYTHON="${PYTHON:-$([[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3)}"
DEVICE="${DEVICE:-cuda}"
QUICK="${QUICK:-0}"
PART_TIMEOUT="${PART_TIMEOUT:-240}"
REPORT="$OUT_DIR/gpu_report.md"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONWARNINGS=ignore PYTHONUNBUFFERED=1

if [[ -n "${WHEELS:-}" ]]; then
    echo "[gpu_report] installing from $WHEELS (offline)"
    MMCV_WITH_OPS=1 FORCE_CUDA=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" "$PYTHON" -m pip install -q --no-index \
        --no-build-isolation --find-links "$WHEELS" "$WHEELS"/* || echo "[gpu_report] some wheels did not install"
fi

ONNX_CONFIGS=(configs/repvit/mask-rcnn_repvit-m1.1_coco.py configs/edgenext/mask-rcnn_edgenext-small_coco.py)
if [[ "$QUICK" == 1 ]]; then
    # a check of every step at the smallest cost: one timed round, TransNeXt's position-bias pooling at its ImageNet
    # size, one exported config, two training iterations of one image each
    SHAPE=(64 96); BATCHES=(1 2); REPEAT=1; WARMUP=0; TN_IMG_SIZE=224; ONNX_CONFIGS=("${ONNX_CONFIGS[0]}")
    TRAIN_OPTIONS=(train_cfg.max_epochs=1 train_dataloader.batch_size=1 train_dataloader.dataset.indices=2
        val_dataloader.dataset.indices=2 test_dataloader.dataset.indices=2)
else
    SHAPE=(800 1280); BATCHES=(1 8); REPEAT=20; WARMUP=5; TN_IMG_SIZE=800; TRAIN_OPTIONS=(train_cfg.max_epochs=2)
fi
DTYPES=(fp32 bf16); COMPILE=()
if [[ "$DEVICE" == cuda ]]; then DTYPES=(fp32 fp16 bf16); COMPILE=(--compile); fi

part() {  # part NAME COMMAND...: run with a time limit, keep its output, note a failure in the report
    local name="$1"; shift
    echo "[gpu_report] $name"
    if ! timeout "$PART_TIMEOUT" "$@" > "$OUT_DIR/$name.log" 2>&1; then
        echo "[gpu_report] $name failed or timed out (see $OUT_DIR/$name.log)"
        printf '\n**%s: failed or timed out**; the end of its log:\n\n```\n%s\n```\n' "$name" \
            "$(tail -n 15 "$OUT_DIR/$name.log")" >> "$REPORT"
        return 1
    fi
}

"$PYTHON" - "$DEVICE" > "$REPORT" <<'PY'
import sys
import torch
device = sys.argv[1]
if device == 'cuda' and not torch.cuda.is_available():
    sys.exit('DEVICE=cuda but torch sees no GPU (torch %s, CUDA build %s)' % (torch.__version__, torch.version.cuda))
name = torch.cuda.get_device_name() if device == 'cuda' else 'CPU (script check, not GPU numbers)'
print(f'# GPU report\n\nDevice: {name}; torch {torch.__version__} (CUDA {torch.version.cuda}); '
      f'cuDNN {torch.backends.cudnn.version() if device == "cuda" else "-"}\n')
PY
[[ -s "$REPORT" ]] || exit 1

echo "## Backbones" >> "$REPORT"
read -r -a TARGETS <<< "${TARGETS:-RepViT:m1.1 EdgeNeXt:small FasterViT:0 TransNeXt:micro}"
if part backbones "$PYTHON" tools/analysis/benchmark.py "${TARGETS[@]}" \
        --device "$DEVICE" --dtype "${DTYPES[@]}" "${COMPILE[@]}" --shape "${SHAPE[@]}" --batch "${BATCHES[@]}" \
        --repeat "$REPEAT" --warmup "$WARMUP" --out "$OUT_DIR/backbones.md"; then
    printf '\n`benchmark.py ... --device %s --dtype %s %s --shape %s --batch %s`\n\n' "$DEVICE" "${DTYPES[*]}" \
        "${COMPILE[*]}" "${SHAPE[*]}" "${BATCHES[*]}" >> "$REPORT"
    cat "$OUT_DIR/backbones.md" >> "$REPORT"
fi

echo -e "\n## TransNeXt attention paths" >> "$REPORT"
# The CPU's inference form (cached tables + the CPU flash kernel) exists on the CPU only; on a GPU the reference
# (unfold) and efficient paths, eager and compiled, fp32 / fp16 / bf16 autocast, at the detection config's sizes.
if [[ "$QUICK" == 1 ]]; then TN_SHAPES=(64x96); else TN_SHAPES=(320x512 800x1280); fi
if [[ "$DEVICE" == cuda ]]; then TN_PATHS=(reference efficient); else TN_PATHS=(efficient flash); fi
TN_OPTIONS=(--attention-paths "${TN_PATHS[@]}" --device "$DEVICE" --dtype "${DTYPES[@]}" "${COMPILE[@]}"
    --shapes "${TN_SHAPES[@]}" --batch 1 --backbone-options "img_size=$TN_IMG_SIZE")
# Fewer rounds than the other parts: the reference path at 800x1280 and the compilation take most of this part.
if part transnext "$PYTHON" tools/analysis/benchmark.py TransNeXt:tiny "${TN_OPTIONS[@]}" \
        --repeat $((REPEAT < 5 ? REPEAT : 5)) --warmup $((WARMUP < 2 ? WARMUP : 2)) --out "$OUT_DIR/transnext.md"; then
    printf '\n`benchmark.py TransNeXt:tiny %s`\n\n' "${TN_OPTIONS[*]}" >> "$REPORT"
    cat "$OUT_DIR/transnext.md" >> "$REPORT"
fi

echo -e "\n## ONNX Runtime" >> "$REPORT"
part onnxruntime "$PYTHON" - "$OUT_DIR" "$DEVICE" "${SHAPE[@]}" "${ONNX_CONFIGS[@]}" <<'PY' \
    && cat "$OUT_DIR/onnxruntime.md" >> "$REPORT"
import statistics
import sys
import time

import numpy as np
import torch

out_dir, device, height, width, configs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:]
sys.stdout = open(f'{out_dir}/onnxruntime.md', 'w')  # the table; the log keeps the exporter's messages
try:
    import onnxruntime as ort
except ImportError:
    print('\nonnxruntime is not installed: skipped.')
    sys.exit()
provider = 'CUDAExecutionProvider' if device == 'cuda' else 'CPUExecutionProvider'
if provider not in ort.get_available_providers():
    print(f'\nonnxruntime {ort.__version__} has no {provider} (providers: {ort.get_available_providers()}): '
          'skipped.')
    sys.exit()
from mmlightvit.deploy.onnx_export import build_export_target, export_onnx
print(f'\nonnxruntime {ort.__version__}, {provider}, fused backbones, batch 1, {height}x{width}, fp32:\n')
print('| config | ONNX Runtime (ms) | PyTorch eager fused (ms) |\n| --- | --- | --- |')
for config in configs:
    target = build_export_target(config, None, mode='backbone')
    onnx_file = f'{out_dir}/{config.split("/")[-1][:-3]}.onnx'
    export_onnx(target, onnx_file, shape=(height, width))
    session = ort.InferenceSession(onnx_file, providers=[provider])
    image = np.random.default_rng(0).standard_normal((1, 3, height, width), dtype=np.float32)
    feeds = {session.get_inputs()[0].name: image}
    model = target.module.to(device).eval()
    tensor = torch.from_numpy(image).to(device)

    def median_ms(fn, repeat=20):
        for _ in range(3):
            fn()
        times = []
        for _ in range(repeat):
            if device == 'cuda':
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device == 'cuda':
                torch.cuda.synchronize()
            times.append((time.perf_counter() - start) * 1000)
        return statistics.median(times)

    with torch.no_grad():
        onnx_ms, torch_ms = median_ms(lambda: session.run(None, feeds)), median_ms(lambda: model(tensor))
    print(f'| {config} | {onnx_ms:.2f} | {torch_ms:.2f} |')
PY

echo -e "\n## TensorRT" >> "$REPORT"
# The backbones as TensorRT engines (float32, float16, INT8 from the symmetric QDQ file) beside PyTorch's fp32 and
# fp16 autocast forms, batch 1, at 224x224 and at the detection size.
if [[ "$DEVICE" == cuda ]] && "$PYTHON" -c "import tensorrt" 2>/dev/null; then
    TRT_OPTIONS=(--deploy-forms --device cuda --dtype fp32 fp16 --shapes 224x224 "${SHAPE[0]}x${SHAPE[1]}" --batch 1)
    if part tensorrt "$PYTHON" tools/analysis/benchmark.py "${TARGETS[@]}" "${TRT_OPTIONS[@]}" \
            --repeat "$REPEAT" --warmup "$WARMUP" --out "$OUT_DIR/tensorrt.md"; then
        printf '\n`benchmark.py %s %s`\n\n' "${TARGETS[*]}" "${TRT_OPTIONS[*]}" >> "$REPORT"
        cat "$OUT_DIR/tensorrt.md" >> "$REPORT"
    fi
else
    echo -e "\nSkipped: TensorRT needs DEVICE=cuda and the tensorrt package" \
        "(\`pip install tensorrt\`, the build for the CUDA of this torch)." >> "$REPORT"
fi

echo -e "\n## Mixed-precision training (demo Mask R-CNN, RepViT-M1.1)" >> "$REPORT"
if ! "$PYTHON" -c "import mmcv.ops, mmdet" 2>/dev/null; then
    echo -e "\nmmcv with its ops or mmdet is missing in this environment: skipped." >> "$REPORT"
else
    CONFIG=configs/repvit/mask-rcnn_repvit-m1.1_coco-demo.py
    WORK="$OUT_DIR/train"
    AMP=(--amp)
    if part train "$PYTHON" tools/train.py "$CONFIG" --work-dir "$WORK" "${AMP[@]}" --cfg-options \
            "${TRAIN_OPTIONS[@]}"; then
        "$PYTHON" - "$WORK" "$CONFIG" "${TRAIN_OPTIONS[*]}" >> "$REPORT" <<'PY'
import glob
import json
import statistics
import sys

work, config, options = sys.argv[1:4]
records = [json.loads(line) for line in open(sorted(glob.glob(f'{work}/*/vis_data/scalars.json'))[-1])]
train = [r for r in records if 'loss' in r]
metrics = [r for r in records if 'coco/bbox_mAP' in r]
memory = max((r.get('memory', 0) for r in train), default=0)
print(f'\n`tools/train.py {config} --amp --cfg-options {options}` ({len(train)} logged iterations)\n')
print('| s / iter (median) | peak memory (MB) | first loss | last loss | val box AP | val mask AP |')
print('| --- | --- | --- | --- | --- | --- |')
last = metrics[-1] if metrics else {}
print(f'| {statistics.median(r["time"] for r in train):.3f} | {memory} | {train[0]["loss"]:.3f} | '
      f'{train[-1]["loss"]:.3f} | {last.get("coco/bbox_mAP", "-")} | {last.get("coco/segm_mAP", "-")} |')
PY
    fi
fi
echo "[gpu_report] written: $REPORT"
cat "$REPORT"
