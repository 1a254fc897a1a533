# FasterViT-4-21K-224: FasterViT-4 without carrier tokens and with windows 14 / 7 in stages 3 / 4 (the
# official 21K models), pre-trained on ImageNet-21K and fine-tuned on ImageNet-1k at 224x224, evaluated as the
# official model config evaluates it (crop_pct 0.95 squash: bicubic warp to 235x235, centre crop 224). Neither
# the 21K pre-training nor the fine-tuning recipe is published: training with this config runs the recipe of
# fastervit-4_32xb128_in1k.py at this size, with the 21K model's drop path 0.42.
# Released: https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_4_21k_224_w14.pth.tar (top-1 86.6).
_base_ = './fastervit-4_32xb128_in1k.py'
model = dict(
    backbone=dict(window_size=(14, 7), use_carrier_tokens=False, drop_path_rate=0.42))
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(235, 235), backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
