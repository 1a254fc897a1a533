# Ablation: no learnable query embedding. The released weights include it, so this trains from scratch; compare it
# with the main config trained the same way.
_base_ = '../mask-rcnn_transnext-tiny_coco.py'
model = dict(backbone=dict(use_query_embedding=False, init_cfg=None))
