# Ablation: 3x3 carrier tokens per window (ct_size=3) instead of the official 2x2: a finer carrier grid, more
# carrier-token attention cost. No weight depends on the grid size, so the official checkpoint still loads strictly
# (checked with a checkpoint saved from the default model).
_base_ = '../mask-rcnn_fastervit-0_coco.py'
model = dict(backbone=dict(ct_size=3))
