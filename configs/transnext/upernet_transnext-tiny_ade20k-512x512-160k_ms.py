# The multi-scale + flip test of UperNet TransNeXt-Tiny (official upernet_transnext_tiny_512x512_160k_ade20k_ms.py):
# the same trained model, tested with `tools/test.py THIS_CONFIG CHECKPOINT --tta` over 6 scales and flips, on
# whole images. The CPB tables are computed for 800 (the average multi-scale input is much larger than 512) and
# interpolated at every other size.
_base_ = './upernet_transnext-tiny_ade20k-512x512-160k.py'
model = dict(backbone=dict(img_size=800), test_cfg=dict(_delete_=True, mode='whole'))
