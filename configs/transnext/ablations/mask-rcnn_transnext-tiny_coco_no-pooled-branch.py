# Ablation: no pooled (coarse) branch: each query attends to its 3x3 window only. The pooled branch's weights are
# gone, so this trains from scratch; compare it with the main config trained the same way.
_base_ = '../mask-rcnn_transnext-tiny_coco.py'
model = dict(backbone=dict(use_pooled_branch=False, init_cfg=None))
