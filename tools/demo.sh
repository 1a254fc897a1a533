#!/usr/bin/env bash
# The main job on a fresh machine: install (idempotent), then train and evaluate Mask R-CNN with a RepViT-M1.1
# backbone on the generated demo COCO set, on the CPU, and print the box and mask AP.
#   bash tools/demo.sh [extra tools/train.py options]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash tools/install.sh
export PYTHONWARNINGS=ignore

CONFIG=configs/repvit/mask-rcnn_repvit-m1.1_coco-demo.py
WORK_DIR=work_dirs/mask-rcnn_repvit-m1.1_coco-demo
start=$(date +%s)
.venv/bin/python tools/train.py "$CONFIG" --work-dir "$WORK_DIR" "$@"
checkpoint="$(cat "$WORK_DIR/last_checkpoint")"
.venv/bin/python tools/test.py "$CONFIG" "$checkpoint" --work-dir "$WORK_DIR/test" 2>&1 | tee "$WORK_DIR/test.log"
echo
echo "Trained and evaluated in $(( $(date +%s) - start )) s; checkpoint: $checkpoint"
"$ROOT/.venv/bin/python" - "$WORK_DIR/test.log" <<'PY'
import re
import sys

text = open(sys.argv[1]).read()
print('       AP     AP50   AP75   APs    APm    APl')
for kind, name in (('bbox', 'box'), ('segm', 'mask')):
    values = re.findall(rf'{kind}_mAP_copypaste: ([0-9. ]+)', text)[-1].split()
    print(f'{name:5s}  ' + '  '.join(f'{float(v):.3f}' for v in values))
PY
