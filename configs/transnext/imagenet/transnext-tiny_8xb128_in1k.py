# TransNeXt-Tiny ImageNet-1k classifier: the recipe of transnext-micro_8xb128_in1k.py with drop path 0.25.
# Released: https://huggingface.co/DaiShiResearch/transnext-tiny-224-1k/resolve/main/transnext_tiny_224_1k.pth
# (top-1 84.0).
_base_ = './transnext-micro_8xb128_in1k.py'
model = dict(backbone=dict(arch='tiny', drop_path_rate=0.25), head=dict(in_channels=576))
