# TransNeXt-Base ImageNet-1k classifier: the recipe of transnext-micro_8xb128_in1k.py with drop path 0.6.
# Released: https://huggingface.co/DaiShiResearch/transnext-base-224-1k/resolve/main/transnext_base_224_1k.pth
# (top-1 84.8).
_base_ = './transnext-micro_8xb128_in1k.py'
model = dict(backbone=dict(arch='base', drop_path_rate=0.6), head=dict(in_channels=768))
