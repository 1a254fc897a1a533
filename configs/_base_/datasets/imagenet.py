# ImageNet-1k as mmpretrain reads it (data/imagenet/{train,val}/<class>/ with meta/{train,val}.txt) through the
# project's ImageNet dataset (mmpretrain's, with errors that name the file), with mmpretrain's DeiT-style pipeline:
# bicubic RandomResizedCrop 224, flip, RandAugment rand-m9-mstd0.5-inc1, random erasing 0.25 (timm's 'pixel'
# mode); test: bicubic resize of the short side to 256, centre crop 224.
_base_ = 'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py'
train_dataloader = dict(dataset=dict(type='mmlightvit.ImageNet'))
val_dataloader = dict(dataset=dict(type='mmlightvit.ImageNet'))
test_dataloader = val_dataloader
