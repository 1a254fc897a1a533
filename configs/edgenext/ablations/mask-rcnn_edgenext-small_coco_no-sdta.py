# Ablation: conv encoders only (every SDTA encoder replaced by a conv encoder, same depths). The architecture
# differs from the released weights, so it trains from scratch; compare it with the main config trained the same way.
_base_ = '../mask-rcnn_edgenext-small_coco.py'
model = dict(backbone=dict(use_sdta=False, init_cfg=None))
