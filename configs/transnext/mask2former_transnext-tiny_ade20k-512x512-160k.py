# Mask2Former, TransNeXt-Tiny, ADE20K 512x512, 160k: the official recipe (segmentation/mask2former in the official
# repository, on mmseg's Mask2Former R-50 160k config). Official result: mIoU 53.4 single scale, 47.5M parameters.
# Everything of the head, data pipeline (short side 256-1024, 512 crops), schedule (poly 0.9, no warm-up, 160k
# iterations, 2 images x 8 GPUs) and test (whole image, short side 512) is mmseg's; what differs is the backbone
# (drop path 0.3, CPB tables interpolated from 224 to 512) and the optimizer groups: AdamW 1e-4, wd 0.05, clip
# 0.01, backbone lr x0.1 through the official keys (see ../_base_/transnext_dense_paramwise.py), which replace
# mmseg 1.2.2's 'backbone' key (the official base, from mmseg 1.0.0, had none), query / level embeddings at full
# lr without decay, no decay on biases and norms.
_base_ = [
    'mmseg::mask2former/mask2former_r50_8xb2-160k_ade20k-512x512.py',
    '../_base_/transnext_dense_paramwise.py',
]
checkpoint = 'https://huggingface.co/DaiShiResearch/transnext-tiny-224-1k/resolve/main/transnext_tiny_224_1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmlightvit.TransNeXt',
        arch='tiny',
        pretrain_size=224,
        img_size=512,
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    decode_head=dict(in_channels=[72, 144, 288, 576]))
optim_wrapper = dict(
    paramwise_cfg=dict(
        _delete_=True,
        custom_keys={{_base_.transnext_mask2former_custom_keys}},
        bias_decay_mult=0.,
        norm_decay_mult=0.,
        flat_decay_mult=0.))
# ADE20K read by the project's ADE20KDataset (mmseg's, with errors that name the file)
train_dataloader = dict(dataset=dict(type='mmlightvit.ADE20KDataset'))
val_dataloader = dict(dataset=dict(type='mmlightvit.ADE20KDataset'))
test_dataloader = val_dataloader
# `--tta`: the test scale times each ratio, each pass also flipped (as ../_base_/datasets/ade20k.py)
tta_scale_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
custom_hooks = [dict(type='mmlightvit.RNGStateHook')]
