# Semantic FPN, TransNeXt-Micro, ADE20K 512x512, 40k iterations. The paper has no Semantic FPN result: the
# optimizer is the official UperNet one (AdamW 6e-5 would be slow for 40k, so RepViT's Semantic FPN recipe is
# used: AdamW 2e-4, wd 1e-4, poly 0.9, reference batch 32), with TransNeXt's no-decay parameter groups.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    '../_base_/datasets/ade20k.py',
    '../_base_/schedules/semantic-fpn_adamw-poly_40k.py',
    'mmseg::_base_/default_runtime.py',
]
crop_size = (512, 512)
checkpoint = 'https://huggingface.co/DaiShiResearch/transnext-micro-224-1k/resolve/main/transnext_micro_224_1k.pth'
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='mmlightvit.TransNeXt',
        arch='micro',
        pretrain_size=224,
        img_size=512,
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[48, 96, 192, 384]),
    decode_head=dict(num_classes=150))

no_decay = dict(decay_mult=0.)
optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            'query_embedding': no_decay,
            'relative_pos_bias_local': no_decay,
            'cpb': no_decay,
            'temperature': no_decay,
            'norm': no_decay,
        }))
train_dataloader = dict(batch_size=4)
