from .edgenext import EdgeNeXt
from .fastervit import FasterViT
from .repvit import RepViT
from .transnext import TransNeXt

__all__ = ['RepViT', 'EdgeNeXt', 'TransNeXt', 'FasterViT']
