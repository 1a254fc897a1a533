# UperNet, EdgeNeXt-Base, ADE20K 512x512, 160k; recipe of upernet_edgenext-small_ade20k-512x512-160k.py (ours,
# after mmseg's ConvNeXt UperNet), from the USI-distilled ImageNet-1K release.
_base_ = './upernet_edgenext-small_ade20k-512x512-160k.py'
checkpoint = 'https://github.com/mmaaz60/EdgeNeXt/releases/download/v1.2/edgenext_base_usi.pth'
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.3, init_cfg=dict(checkpoint=checkpoint)),
    decode_head=dict(in_channels=[80, 160, 288, 584]),
    auxiliary_head=dict(in_channels=288))
