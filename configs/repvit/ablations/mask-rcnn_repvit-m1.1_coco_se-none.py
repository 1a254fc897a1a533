# Architecture ablation: no SE at all (se_mode='none'), to measure what SE contributes to dense prediction.
# Trains the backbone from scratch (no ImageNet checkpoint has this architecture; a strict load of the official one
# fails on the missing SE modules), so it inherits the from-scratch reference and changes only this switch.
_base_ = './mask-rcnn_repvit-m1.1_coco_scratch.py'
model = dict(backbone=dict(se_mode='none'))
