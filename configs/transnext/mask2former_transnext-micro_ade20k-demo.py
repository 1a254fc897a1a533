# Mask2Former + TransNeXt-Micro on the generated demo ADE20K set (5 classes, 128x128 crops), from scratch on a CPU
# in minutes: the recipe of mask2former_transnext-tiny_ade20k-512x512-160k.py (parameter groups, clipping, poly
# schedule) with a slim head (64 channels, 20 queries, 1 pixel-decoder layer, 3 decoder layers, points sampled on
# a 32x32 grid) and a higher lr for the short run without ImageNet weights.
_base_ = './mask2former_transnext-tiny_ade20k-512x512-160k.py'

num_classes = 5
crop_size = (128, 128)
channels = 64
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch='micro', img_size=128, pretrain_size=128, drop_path_rate=0.1, init_cfg=None),
    decode_head=dict(
        in_channels=[48, 96, 192, 384],
        feat_channels=channels,
        out_channels=channels,
        num_classes=num_classes,
        num_queries=20,
        pixel_decoder=dict(
            encoder=dict(
                num_layers=1,
                layer_cfg=dict(
                    self_attn_cfg=dict(embed_dims=channels),
                    ffn_cfg=dict(embed_dims=channels, feedforward_channels=4 * channels))),
            positional_encoding=dict(num_feats=channels // 2)),
        positional_encoding=dict(num_feats=channels // 2),
        transformer_decoder=dict(
            num_layers=3,
            layer_cfg=dict(
                self_attn_cfg=dict(embed_dims=channels),
                cross_attn_cfg=dict(embed_dims=channels),
                ffn_cfg=dict(embed_dims=channels, feedforward_channels=4 * channels))),
        loss_cls=dict(class_weight=[1.0] * num_classes + [0.1]),
        train_cfg=dict(num_points=1024)))

dataset_type = 'mmlightvit.DemoADE20KDataset'
data_root = 'data/demo/ade20k'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(256, 128), ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 128), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=4, num_workers=2, dataset=dict(type=dataset_type, data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=2, dataset=dict(type=dataset_type, data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

max_iters = 500
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(optimizer=dict(lr=5e-4), clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', power=0.9, eta_min=1e-5, begin=50, end=max_iters, by_epoch=False),
]
default_hooks = dict(logger=dict(interval=25), checkpoint=dict(interval=max_iters, save_best=None))
auto_scale_lr = dict(enable=False, base_batch_size=4)
