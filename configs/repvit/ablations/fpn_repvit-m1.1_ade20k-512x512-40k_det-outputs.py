# Ablation: Semantic FPN with the stage outputs the official *detection* code uses (before the next stage's
# pre-block, out_after_preblock=False) instead of the segmentation code's (after it). Same weights, so the official
# checkpoint loads as in the main config; measures whether the placement the segmentation code chose matters.
_base_ = '../fpn_repvit-m1.1_ade20k-512x512-40k.py'
model = dict(backbone=dict(out_after_preblock=False))
