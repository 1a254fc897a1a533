"""Released whole models (detectors, segmentors, classifiers) in their official layouts, read into ours: what every
load path asks (tools/test.py's load hooks, the inference API, tools/model_converters/release_to_mmlightvit.py)."""
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn

from mmlightvit.utils.checkpoint import convert_released_state
from .dino_release import convert_idea_dino_state, is_idea_dino_state


def convert_released_model(model: nn.Module, state: Dict[str, torch.Tensor]) -> Tuple[Dict, Optional[str]]:
    """``(state, layout)``: ``state`` in ``model``'s keys, and the release layout it came in (None: it was in ours
    and is returned as it is). The FasterViT DINO release is an IDEA-Research DINO training checkpoint
    (:mod:`.dino_release`); the other releases keep mmdet / mmseg / mmpretrain names around an official backbone
    (:func:`~mmlightvit.utils.checkpoint.convert_released_state`)."""
    if is_idea_dino_state(state):
        return convert_idea_dino_state(state, model), (
            'IDEA-Research DINO training-checkpoint layout (80 of its 91 category-id classes, its shared decoder '
            'heads copied into every layer)')
    state, converted = convert_released_state(model, state)
    return state, f'official {type(model.backbone).__name__} layout' if converted else None
