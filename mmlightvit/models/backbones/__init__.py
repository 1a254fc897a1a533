from .edgenext import EdgeNeXt
from .repvit import RepViT

__all__ = ['RepViT', 'EdgeNeXt']
