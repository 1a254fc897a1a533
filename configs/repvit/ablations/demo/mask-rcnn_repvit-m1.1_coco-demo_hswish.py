# Demo ablation: Hardswish instead of GELU in the stem and the channel mixers.
_base_ = './mask-rcnn_repvit-m1.1_coco-demo_baseline.py'
model = dict(backbone=dict(act_cfg=dict(type='HSwish')))
