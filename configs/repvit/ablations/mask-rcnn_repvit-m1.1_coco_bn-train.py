# Ablation: BN statistics train (norm_eval=False) instead of staying at their ImageNet values as in the official
# wrapper. With 2 images per GPU per-GPU statistics are noisy; on GPUs add --cfg-options sync_bn=torch to match
# the official SyncBN conversion.
_base_ = '../mask-rcnn_repvit-m1.1_coco.py'
model = dict(backbone=dict(norm_eval=False))
