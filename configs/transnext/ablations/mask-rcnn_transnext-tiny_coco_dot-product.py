# Ablation: plain scaled dot-product attention instead of length-scaled cosine attention (no L2 normalisation, no
# learnable temperature x log(length)). The released weights were trained for the cosine form, so this trains from
# scratch; compare it with the main config trained the same way.
_base_ = '../mask-rcnn_transnext-tiny_coco.py'
model = dict(backbone=dict(attention_scaling='dot_product', init_cfg=None))
