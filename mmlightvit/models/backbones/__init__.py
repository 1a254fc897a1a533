from .edgenext import EdgeNeXt
from .fastervit import FasterViT
from .repvit import RepViT
from .transnext import TransNeXt

#: Every family, for what serves them all (the converter tool, the reference builder): a new family is added here.
FAMILIES = (RepViT, EdgeNeXt, FasterViT, TransNeXt)

__all__ = ['RepViT', 'EdgeNeXt', 'TransNeXt', 'FasterViT', 'FAMILIES']
