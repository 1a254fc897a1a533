# Demo ablation: plain DW3x3-BN token mixers, without the training-time 1x1 and identity branches that
# re-parameterisation folds away (same inference cost).
_base_ = './mask-rcnn_repvit-m1.1_coco-demo_baseline.py'
model = dict(backbone=dict(use_rep_branch=False))
