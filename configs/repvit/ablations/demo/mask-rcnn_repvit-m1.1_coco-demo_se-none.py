# Demo ablation: RepViT-M1.1 without squeeze-and-excitation (se_mode='none').
_base_ = './mask-rcnn_repvit-m1.1_coco-demo_baseline.py'
model = dict(backbone=dict(se_mode='none'))
