# FasterViT-4-21K-384: FasterViT-4 without carrier tokens and with windows 24 / 12 in stages 3 / 4 (the
# official 21K models), pre-trained on ImageNet-21K and fine-tuned on ImageNet-1k at 384x384, evaluated as the
# official model config evaluates it (bicubic warp to 384x384). Neither the 21K pre-training nor the
# fine-tuning recipe is published: training with this config runs the recipe of fastervit-4_32xb128_in1k.py (224
# crops), with the 21K model's drop path 0.42.
# Released: https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_4_21k_384_w24.pth.tar (top-1 87.6).
_base_ = './fastervit-4_32xb128_in1k.py'
model = dict(
    backbone=dict(window_size=(24, 12), use_carrier_tokens=False, drop_path_rate=0.42))
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(384, 384), backend='pillow', interpolation='bicubic'),
    dict(type='PackInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
