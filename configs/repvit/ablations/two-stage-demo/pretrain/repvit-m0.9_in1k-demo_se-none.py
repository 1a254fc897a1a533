# Stage 1 of the two-stage demo ablation without squeeze-and-excitation.
_base_ = './repvit-m0.9_in1k-demo_baseline.py'
model = dict(backbone=dict(se_mode='none'))
