# EdgeNeXt-Base trained with USI (knowledge distillation, arXiv 2204.03475), evaluated as the official code
# evaluates the USI releases: bicubic resize to 269 (crop_pct 0.95), centre crop 256. The USI training recipe is
# not in the official repository: training with this config runs the recipe of edgenext-base_8xb256-accu2_in1k.py.
# Released: https://github.com/mmaaz60/EdgeNeXt/releases/download/v1.2/edgenext_base_usi.pth (top-1 83.68; its
# weights are under state_dict, which the loader reads when there is no model_ema).
_base_ = './edgenext-base_8xb256-accu2_in1k.py'
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=269, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=256),
    dict(type='PackInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
