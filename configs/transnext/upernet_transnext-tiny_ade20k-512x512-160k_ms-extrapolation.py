# The multi-scale + flip test of UperNet TransNeXt-Tiny in extrapolation mode (official
# upernet_transnext_tiny_512x512_160k_ade20k_ms_extrapolation.py): as the _ms config, with the position-bias
# tables computed at each input's own size instead of interpolated. `tools/test.py THIS_CONFIG CHECKPOINT --tta`.
_base_ = './upernet_transnext-tiny_ade20k-512x512-160k_ms.py'
model = dict(backbone=dict(extrapolation=True))
