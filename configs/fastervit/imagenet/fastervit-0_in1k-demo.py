# FasterViT-0 classifier (the model of fastervit-0_32xb128_in1k.py) on the generated demo classification set,
# trained from scratch on a CPU in minutes (see configs/_base_/classifier_demo.py).
_base_ = '../../_base_/classifier_demo.py'
model = dict(
    backbone=dict(type='mmlightvit.FasterViT', arch='0', drop_path_rate=0.1),
    head=dict(in_channels=512, pre_pool_norm='BN'))
