"""Inference: models from a config or a zoo name with their trained weights, and mmdet's / mmseg's inferencers.

``model`` and ``model_index`` need torch and mmengine only; the inferencers (which import mmdet and mmseg) load
when first used.
"""
from .model import build_model, config_without_pretrained, drop_pretrained, init_model, load_model_weights
from .model_index import ZooModel, find_model, list_models, load_metafiles, load_model_index

_INFERENCERS = ('LightDetInferencer', 'LightSegInferencer', 'build_inferencer')

__all__ = [
    'build_model', 'config_without_pretrained', 'drop_pretrained', 'init_model',
    'load_model_weights', 'ZooModel', 'find_model', 'list_models', 'load_metafiles', 'load_model_index',
    *_INFERENCERS
]


def __getattr__(name: str):
    if name in _INFERENCERS:
        from . import inferencers
        return getattr(inferencers, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
