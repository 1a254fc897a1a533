# Reference point of the architecture ablations (se-all, se-none, no-rep-branch): the main M1.1 Mask R-CNN config
# with the backbone trained from scratch, since no ImageNet checkpoint exists for the changed architectures. Two
# changes are forced by that, not chosen: no init_cfg, and BN statistics train (norm_eval=False; with
# norm_eval=True a from-scratch backbone would keep mean 0 / var 1 forever). Only compare the ablations with this
# config, under the same schedule; 12 epochs from scratch is far below the paper's numbers. On GPUs, consider
# --cfg-options sync_bn=torch (2 images per GPU make per-GPU BN statistics noisy).
_base_ = '../mask-rcnn_repvit-m1.1_coco.py'
model = dict(backbone=dict(norm_eval=False, init_cfg=None))
