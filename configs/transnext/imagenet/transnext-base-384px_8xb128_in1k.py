# TransNeXt-Base fine-tuned at 384x384 from the 224 release, with the official recipe
# (classification/configs/finetune/transnext_base_384_ft.py): the fine-tuning recipe of
# transnext-small-384px_8xb128_in1k.py (5 epochs at a constant lr 1e-5, Mixup 0.8 without CutMix, position tables
# for 384 with the coordinates of 224, a bicubic warp to 384x384 at test) with drop path 0.8.
# Released:
# https://huggingface.co/DaiShiResearch/transnext-base-384-1k-ft-1k/resolve/main/transnext_base_384_1k_ft_1k.pth
# (top-1 86.2).
_base_ = './transnext-small-384px_8xb128_in1k.py'
model = dict(backbone=dict(arch='base', drop_path_rate=0.8), head=dict(in_channels=768))
load_from = 'https://huggingface.co/DaiShiResearch/transnext-base-224-1k/resolve/main/transnext_base_224_1k.pth'
