"""Inference: models from a config or a zoo name with their trained weights, and mmdet's / mmseg's inferencers.
Imports mmdet and mmseg (unlike the backbones)."""
from .inferencers import LightDetInferencer, LightSegInferencer, build_inferencer
from .model import init_model, load_model_weights
from .model_index import ZooModel, find_model, list_models, load_metafiles, load_model_index

__all__ = [
    'LightDetInferencer', 'LightSegInferencer', 'build_inferencer', 'init_model', 'load_model_weights', 'ZooModel',
    'find_model', 'list_models', 'load_metafiles', 'load_model_index'
]
