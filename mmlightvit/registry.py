"""The project's registries: children of mmengine's root registries under the scope ``mmlightvit``.

Configs of any OpenMMLab package (mmdet, mmseg, mmpretrain) reach our modules through the scope prefix, e.g.
``backbone=dict(type='mmlightvit.RepViT', ...)``. Resolving such a name imports this module and then the
``locations`` below, so no ``custom_imports`` is needed. This module imports mmengine only, which keeps the
backbones usable with torch and mmengine alone.
"""
from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry

MODELS = Registry(
    'model', parent=MMENGINE_MODELS, scope='mmlightvit', locations=['mmlightvit.models'])
DATASETS = Registry(
    'dataset', parent=MMENGINE_DATASETS, scope='mmlightvit', locations=['mmlightvit.datasets'])
DATA_SAMPLERS = Registry(
    'data sampler', parent=MMENGINE_DATA_SAMPLERS, scope='mmlightvit', locations=['mmlightvit.engine'])
MODEL_WRAPPERS = Registry(
    'model_wrapper', parent=MMENGINE_MODEL_WRAPPERS, scope='mmlightvit', locations=['mmlightvit.engine'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='mmlightvit', locations=['mmlightvit.engine'])
OPTIM_WRAPPERS = Registry(
    'optim_wrapper', parent=MMENGINE_OPTIM_WRAPPERS, scope='mmlightvit', locations=['mmlightvit.engine'])
TRANSFORMS = Registry(
    'transform', parent=MMENGINE_TRANSFORMS, scope='mmlightvit', locations=['mmlightvit.datasets'])
