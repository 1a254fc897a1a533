# Reference point of the from-scratch ablation (no-carrier-tokens): the main FasterViT-0 Mask R-CNN config with the
# backbone trained from scratch (init_cfg=None), since no ImageNet checkpoint exists for the changed architecture.
# Only compare that ablation with this config, under the same schedule; 12 epochs from scratch is far below what
# the pretrained backbone reaches.
_base_ = '../mask-rcnn_fastervit-0_coco.py'
model = dict(backbone=dict(init_cfg=None))
