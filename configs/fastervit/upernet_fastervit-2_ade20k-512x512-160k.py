# UperNet, FasterViT-2, ADE20K 512x512, 160k iterations: the paper's segmentor.
# Paper (arXiv 2306.06189, ADE20K UperNet table): mIoU 47.2 single-scale / 48.4 multi-scale, 974 GFLOPs, 377 img/s;
# the table gives no params. Paper recipe: AdamW, lr 6e-5, wd 0.01, batch 16 on 8 A100s. The paper does not give the
# schedule length, warm-up, drop path or layer decay, and no official segmentation code exists: those come from the
# recipe of the Swin baselines it compares with, mmseg's Swin UperNet
# (swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py): 160k iterations, 1500-iteration
# linear warm-up from 1e-6, poly decay power 1.0, batch 8 GPUs x 2, auxiliary FCN head on stage 3, whole-image
# single-scale test (as Swin's), no decay on norms and position-bias tables (here the `cpb_mlp` MLPs) nor on layer
# scales, no layer-wise lr decay. Backbone as in the official DINO code: drop path 0.1, BatchNorm on each returned map.
# The paper's multi-scale result: tools/test.py THIS_CONFIG CHECKPOINT --tta (6 scales + flip, as Swin's).
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    '../_base_/datasets/ade20k.py',
    '../_base_/schedules/upernet_adamw-poly_160k.py',
    'mmseg::_base_/default_runtime.py',
]
crop_size = (512, 512)
checkpoint = 'https://huggingface.co/ahatamiz/FasterViT/resolve/main/fastervit_2_224_1k.pth.tar'  # official README
model = dict(
    pretrained=None,  # the backbone loads its own weights through init_cfg
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='mmlightvit.FasterViT',
        arch='2',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        out_norm_cfg=dict(type='BN'),
        # the official dense code (downstream/object_detection/dino) builds every variant without carrier-token
        # propagation, which the ImageNet models of variants 3-6 use
        do_propagation=False,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    decode_head=dict(in_channels=[96, 192, 384, 768], num_classes=150),
    auxiliary_head=dict(in_channels=384, num_classes=150))

optim_wrapper = dict(
    paramwise_cfg=dict(
        norm_decay_mult=0., custom_keys={
            'cpb_mlp': dict(decay_mult=0.),
            'gamma': dict(decay_mult=0.),
        }))
train_dataloader = dict(batch_size=2)
