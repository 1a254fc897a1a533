# DINO 4-scale, FasterViT-4-21K-224, COCO-2017, 12 epochs: the official recipe of dino-4scale_fastervit-0_coco.py
# (config/DINO/DINO_4scale_faster_vit_4_21k_224.py) with FasterViT-4 pre-trained on ImageNet-21K and fine-tuned on
# ImageNet-1K at 224 (fastervit_4_21k_224_w14). That model has no carrier tokens (official hat all False: plain
# window attention in stage 3 too) and 14x14 windows in stage 3 (official window_size [7, 7, 14, 7]).
# Official result: box AP 55.16. This config trains the detector from the ImageNet weights, and tools/test.py
# evaluates the released detector with it: that file is a training checkpoint of the official DINO code (91
# category-id classes, shared decoder heads), converted in memory when it is loaded
# (mmlightvit/models/dino_release.py; see README).
_base_ = './dino-4scale_fastervit-0_coco.py'
checkpoint = 'https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_4_21k_224_w14.pth.tar'
model = dict(
    backbone=dict(
        arch='4', window_size=(14, 7), use_carrier_tokens=False, init_cfg=dict(checkpoint=checkpoint)),
    neck=dict(in_channels=[392, 784, 1568]))
