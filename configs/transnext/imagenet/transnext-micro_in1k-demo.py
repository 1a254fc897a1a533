# TransNeXt-Micro classifier (the model of transnext-micro_8xb128_in1k.py, its position tables built for the demo's
# 64x64 crops) on the generated demo classification set, trained from scratch on a CPU in minutes (see
# configs/_base_/classifier_demo.py).
_base_ = '../../_base_/classifier_demo.py'
model = dict(
    backbone=dict(type='mmlightvit.TransNeXt', arch='micro', img_size=64, pretrain_size=64, drop_path_rate=0.1),
    head=dict(in_channels=384))
