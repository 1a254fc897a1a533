# Ablation: no 3x3 sliding-window branch: each query attends to the pooled keys only. The window branch's weights
# are gone, so this trains from scratch; compare it with the main config trained the same way.
_base_ = '../mask-rcnn_transnext-tiny_coco.py'
model = dict(backbone=dict(use_window_branch=False, init_cfg=None))
