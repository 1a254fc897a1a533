from .edgenext import EdgeNeXt
from .fastervit import FasterViT
from .repvit import RepViT

__all__ = ['RepViT', 'EdgeNeXt', 'FasterViT']
