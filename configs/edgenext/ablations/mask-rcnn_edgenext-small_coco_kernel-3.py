# Ablation: 3x3 depth-wise kernels in every stage instead of the adaptive 3, 5, 7, 9. Kernel shapes differ from the
# released weights, so this trains from scratch; compare it with the main config trained the same way.
_base_ = '../mask-rcnn_edgenext-small_coco.py'
model = dict(backbone=dict(kernel_sizes=(3, 3, 3, 3), init_cfg=None))
