# The multi-scale + flip test of UperNet TransNeXt-Small in extrapolation mode (official
# upernet_transnext_small_512x512_160k_ade20k_ms_extrapolation.py): as the _ms config, with the position-bias
# tables computed at each input's own size instead of interpolated. `tools/test.py THIS_CONFIG CHECKPOINT --tta`.
_base_ = './upernet_transnext-small_ade20k-512x512-160k_ms.py'
model = dict(backbone=dict(extrapolation=True))
