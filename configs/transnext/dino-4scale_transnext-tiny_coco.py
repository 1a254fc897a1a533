# DINO 4-scale, TransNeXt-Tiny, COCO-2017, 12 epochs: the official recipe (detection/dino in the official
# repository, on mmdet's DINO R-50 config). Official result: box AP 55.1, 47.8M parameters; the released model
# evaluates as it is (python tools/test.py CONFIG RELEASE_URL). The detector (900 queries, 6 + 6 layers,
# denoising queries), data pipeline (DETR multi-scale resize / crop, flip; test 1333x800, no padding) and schedule
# (12 epochs, lr x0.1 after epoch 11) are mmdet's; what differs:
# - backbone: stages 2-4 (strides 8-32) into the neck, which adds the fourth level with a stride-2 conv (official
#   scales=4); drop path 0.3; CPB tables interpolated from 224 to 800.
# - optimizer: AdamW 1e-4, weight decay 0.05 (mmdet: 1e-4), clip 0.1. The backbone trains at lr x0.1 through the
#   official keys (../_base_/transnext_dense_paramwise.py), which replace mmdet 3.3's 'backbone' key (the official
#   base, mmdet 3.0.0's, had none); no decay on biases, norms and the attention's bias / temperature parameters.
#   Reproduced as the official config has it: the last stage's patch embedding and norm (official patch_embed4,
#   norm4) match no key and train at the full lr 1e-4.
# - batch: 1 image x 8 GPUs with gradients accumulated over 2 iterations (16 images per step, the official
#   setting). mmengine's --auto-scale-lr counts GPUs x batch_size and ignores the accumulation, so the reference
#   is 8 per iteration (base_batch_size 8 keeps lr 1e-4 on 8 GPUs).
# - precision: the official config's fp16 = dict(loss_scale=512.) is read by neither mmengine nor mmdet 3.x, so
#   it trained in fp32 unless --amp was given (not recorded); add --amp on GPUs for mixed precision.
_base_ = [
    'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py',
    '../_base_/transnext_dense_paramwise.py',
]
checkpoint = 'https://huggingface.co/DaiShiResearch/transnext-tiny-224-1k/resolve/main/transnext_tiny_224_1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmlightvit.TransNeXt',
        arch='tiny',
        pretrain_size=224,
        img_size=800,
        drop_path_rate=0.3,
        out_indices=(1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[144, 288, 576]))

optim_wrapper = dict(
    optimizer=dict(lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=0.1, norm_type=2),
    paramwise_cfg=dict(
        _delete_=True,
        custom_keys={{_base_.transnext_custom_keys}},
        bias_decay_mult=0.,
        norm_decay_mult=0.,
        flat_decay_mult=0.),
    accumulative_counts=2)
train_dataloader = dict(batch_size=1, dataset=dict(type='mmlightvit.CocoDataset'))
# COCO read by the project's CocoDataset (mmdet's, with errors that name the file)
val_dataloader = dict(dataset=dict(type='mmlightvit.CocoDataset'))
test_dataloader = val_dataloader
auto_scale_lr = dict(enable=False, base_batch_size=8)
custom_hooks = [dict(type='mmlightvit.RNGStateHook')]
