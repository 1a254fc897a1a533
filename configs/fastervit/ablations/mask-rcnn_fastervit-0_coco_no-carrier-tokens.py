# Architecture ablation: no carrier tokens (use_carrier_tokens=False): stage 3 uses plain window attention like
# stage 4, without the token initialiser and the HAT modules, so windows exchange no information inside a stage.
# Trains the backbone from scratch (the released weights include the HAT modules and a strict load fails on them),
# so it inherits the from-scratch reference and changes only this switch.
_base_ = './mask-rcnn_fastervit-0_coco_scratch.py'
model = dict(backbone=dict(use_carrier_tokens=False))
