# Two-stage demo ablation (CPU, minutes in all), run as the papers run architecture ablations: the backbone is
# first trained as an ImageNet-style classifier (pretrain_config, on the demo classification set), then Semantic
# FPN is fine-tuned from it on the demo ADE20K set. The reference the other configs in this folder change one
# thing of (in both stages). Run all of them and get one table of both stages' metrics with
#   python tools/analysis/ablate.py configs/repvit/ablations/two-stage-demo \
#       --baseline fpn_repvit-m0.9_ade20k-demo_baseline
_base_ = '../../../_base_/fpn_demo.py'
pretrain_config = 'pretrain/repvit-m0.9_in1k-demo_baseline.py'
model = dict(
    backbone=dict(
        _delete_=True, type='mmlightvit.RepViT', arch='m0.9', out_indices=(0, 1, 2, 3), out_after_preblock=True),
    neck=dict(in_channels=[48, 96, 192, 384]))

max_iters = 200
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=20),
    dict(type='PolyLR', power=0.9, eta_min=1e-5, begin=20, end=max_iters, by_epoch=False),
]
default_hooks = dict(checkpoint=dict(interval=max_iters))
