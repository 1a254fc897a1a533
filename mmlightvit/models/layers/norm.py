"""Norm layers for NCHW maps that need torch alone (mmcv's builders would make the backbones depend on mmcv)."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map (ConvNeXt's channels-first LayerNorm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def build_norm2d(cfg: dict, channels: int) -> nn.Module:
    """``dict(type='LN2d' | 'BN' | 'SyncBN', eps=...)`` -> a norm over the channels of an NCHW map."""
    cfg = dict(cfg)
    norm_type = cfg.pop('type')
    layers = {'LN2d': LayerNorm2d, 'LN': LayerNorm2d, 'BN': nn.BatchNorm2d, 'SyncBN': nn.SyncBatchNorm}
    if norm_type not in layers:
        raise ValueError(f'Unknown norm type {norm_type!r}; known: {sorted(layers)}.')
    cfg.pop('requires_grad', None)
    return layers[norm_type](channels, **cfg)
