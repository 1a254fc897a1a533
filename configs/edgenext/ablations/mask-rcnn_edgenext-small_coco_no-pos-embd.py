# Ablation: no positional encoding in the SDTA encoders. The released weights include it, so this trains from
# scratch; compare it with the main config trained the same way.
_base_ = '../mask-rcnn_edgenext-small_coco.py'
model = dict(backbone=dict(use_pos_embd=False, init_cfg=None))
