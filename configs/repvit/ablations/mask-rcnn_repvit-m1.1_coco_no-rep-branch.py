# Architecture ablation: plain DW3x3-BN token mixer without the RepVGG 1x1 and identity branches
# (use_rep_branch=False); both fold to the same deploy-time DW3x3 conv, so this measures what the training-time
# branches of structural re-parameterisation are worth at equal inference cost.
# Trains the backbone from scratch (no ImageNet checkpoint has this architecture; a strict load of the official one
# fails on the missing branches), so it inherits the from-scratch reference and changes only this switch.
_base_ = './mask-rcnn_repvit-m1.1_coco_scratch.py'
model = dict(backbone=dict(use_rep_branch=False))
