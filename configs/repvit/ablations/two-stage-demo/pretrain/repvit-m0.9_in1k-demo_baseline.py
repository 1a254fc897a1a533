# Stage 1 of the two-stage demo ablations: the RepViT-M0.9 demo classifier
# (see ../fpn_repvit-m0.9_ade20k-demo_baseline.py).
_base_ = '../../../imagenet/repvit-m0.9_in1k-demo.py'
