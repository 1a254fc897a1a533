# Ablation: freeze the stem and stage 1 (frozen_stages=1, as ResNet detection configs do) to cut training memory
# and time; measures what fine-tuning the first stage is worth.
_base_ = '../mask-rcnn_repvit-m1.1_coco.py'
model = dict(backbone=dict(frozen_stages=1))
