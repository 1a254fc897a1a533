"""Conv2d followed by BatchNorm2d, foldable into a single conv for deployment.

The children are named ``c`` and ``bn`` as in the official RepViT / EfficientViT / LeViT code and in timm's
``ConvNorm``, so checkpoints of those layouts map onto ours key for key.
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm


@torch.no_grad()
def fold_bn(weight: torch.Tensor, bias: Optional[torch.Tensor],
            bn: _BatchNorm) -> Tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BatchNorm that follows a conv (``weight``, ``bias``) into new conv parameters.

    ``bn(conv(x)) = s * (W x + b - mean) + beta`` with ``s = gamma / sqrt(var + eps)``, so the folded conv has
    ``W' = s W`` and ``b' = s (b - mean) + beta``. The arithmetic runs in float64 (it is a handful of small
    tensors) and the results are cast back to ``weight``'s dtype, which keeps the folding error at the rounding
    error of the final cast.
    """
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f'Cannot fold {bn}: it has no running statistics (track_running_stats=False).')
    dtype = weight.dtype
    f64 = torch.float64
    gamma = bn.weight.to(f64) if bn.weight is not None else torch.ones_like(bn.running_var, dtype=f64)
    beta = bn.bias.to(f64) if bn.bias is not None else torch.zeros_like(bn.running_mean, dtype=f64)
    scale = gamma / torch.sqrt(bn.running_var.to(f64) + bn.eps)
    bias64 = bias.to(f64) if bias is not None else torch.zeros_like(scale)
    new_weight = weight.to(f64) * scale.reshape(-1, *([1] * (weight.dim() - 1)))
    new_bias = (bias64 - bn.running_mean.to(f64)) * scale + beta
    return new_weight.to(dtype), new_bias.to(dtype)


def conv_like(conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor) -> nn.Conv2d:
    """A new ``nn.Conv2d`` with ``conv``'s geometry (stride, padding, dilation, groups) and the given parameters."""
    out_channels, in_per_group = weight.shape[:2]
    fused = nn.Conv2d(in_per_group * conv.groups, out_channels, tuple(weight.shape[2:]), stride=conv.stride,
                      padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True,
                      padding_mode=conv.padding_mode, device=weight.device, dtype=weight.dtype)
    fused.weight.copy_(weight)
    fused.bias.copy_(bias)
    fused.requires_grad_(conv.weight.requires_grad)
    return fused


class ConvBN(nn.Module):
    """``nn.Conv2d`` (no bias) + ``nn.BatchNorm2d``; ``fuse()`` returns the equivalent eval-mode ``nn.Conv2d``.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups: as for ``nn.Conv2d``.
        bn_weight_init (float): initial BN scale; 0 makes a residual branch start as the identity (the official
            RepViT code does this for the last conv of every FFN).
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: int = 1,
                 stride: int = 1,
                 padding: int = 0,
                 dilation: int = 1,
                 groups: int = 1,
                 bn_weight_init: float = 1.):
        super().__init__()
        self.c = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.constant_(self.bn.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.c(x))

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        weight, bias = fold_bn(self.c.weight, self.c.bias, self.bn)
        return conv_like(self.c, weight, bias)
