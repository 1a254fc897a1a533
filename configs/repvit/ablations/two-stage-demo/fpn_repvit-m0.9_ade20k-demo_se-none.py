# Two-stage demo ablation: RepViT-M0.9 without squeeze-and-excitation (se_mode='none'), pre-trained as a
# classifier without it, then fine-tuned (see fpn_repvit-m0.9_ade20k-demo_baseline.py).
_base_ = './fpn_repvit-m0.9_ade20k-demo_baseline.py'
pretrain_config = 'pretrain/repvit-m0.9_in1k-demo_se-none.py'
model = dict(backbone=dict(se_mode='none'))
