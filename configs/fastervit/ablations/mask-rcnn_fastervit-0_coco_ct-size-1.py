# Ablation: one carrier token per window (ct_size=1) instead of the official 2x2. No weight depends on the grid size
# (the carrier-token pooling and the position biases are computed at runtime), so the official checkpoint still
# loads strictly (checked with a checkpoint saved from the default model): this measures fine-tuning the pretrained
# HAT with a coarser carrier grid.
_base_ = '../mask-rcnn_fastervit-0_coco.py'
model = dict(backbone=dict(ct_size=1))
