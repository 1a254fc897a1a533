# TransNeXt-Small ImageNet-1k classifier: the recipe of transnext-micro_8xb128_in1k.py with drop path 0.45.
# Released: https://huggingface.co/DaiShiResearch/transnext-small-224-1k/resolve/main/transnext_small_224_1k.pth
# (top-1 84.7).
_base_ = './transnext-micro_8xb128_in1k.py'
model = dict(backbone=dict(arch='small', drop_path_rate=0.45), head=dict(in_channels=576))
