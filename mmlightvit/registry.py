"""The project's registries: children of mmengine's root registries under the scope ``mmlightvit``.

Configs of any OpenMMLab package (mmdet, mmseg, mmpretrain) reach our modules through the scope prefix, e.g.
``backbone=dict(type='mmlightvit.RepViT', ...)``. Resolving such a name imports this module and then the
``locations`` below, so no ``custom_imports`` is needed. This module imports mmengine only, which keeps the
backbones usable with torch and mmengine alone.

:func:`build_or_explain` builds from a config and turns mmengine's "X is not in the S::model registry" into a list
of every registry that was searched (:func:`explain_missing_type`): what the tools and the inference API build
through.
"""
import re
from typing import Callable, Optional, TypeVar

import mmengine.registry
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

T = TypeVar('T')


def explain_missing_type(err: KeyError) -> Optional[str]:
    """Turn mmengine's 'X is not in the S::model registry' into a list of every registry that was searched."""
    match = re.search(r'(\S+) is not in the (\S+)::(\S+) registry', str(err.args[0]) if err.args else '')
    if match is None:
        return None
    name, scope, kind = match.groups()
    roots = [r for r in vars(mmengine.registry).values()
             if isinstance(r, Registry) and r.name == kind and r.parent is None]
    if not roots:
        return None
    if '.' in name:  # a scope-prefixed name is looked up in that package's registry alone
        scope = name.split('.', 1)[0]
    registry = roots[0] if roots[0].scope == scope else roots[0]._children.get(scope, roots[0])
    searched = []
    while registry is not None:
        searched.append(f'{registry.scope}::{registry.name}')
        registry = registry.parent
    ours = roots[0]._children.get('mmlightvit')
    ours_text = ''
    if ours is not None:
        ours.import_from_location()
        ours_text = (f" This project's {kind} types are used with the prefix 'mmlightvit.', e.g. "
                     f"type='mmlightvit.{next(iter(sorted(ours.module_dict)), 'Name')}'; registered: "
                     f"{', '.join(sorted(ours.module_dict)) or 'none'}.")
    return (f'Unknown {kind} type {name!r}: looked in the registries {" -> ".join(searched)} (current scope '
            f'first, then its parents; sibling packages are only searched with a scope prefix such as '
            f"'mmdet.' or 'mmseg.').{ours_text}")


def build_or_explain(build: Callable[..., T], *args, **kwargs) -> T:
    """``build(*args, **kwargs)`` (``MODELS.build``, ``Runner.from_cfg``, ...); mmengine's KeyError for a type that
    no registry holds becomes one that names every registry searched (:func:`explain_missing_type`)."""
    try:
        return build(*args, **kwargs)
    except KeyError as err:
        explanation = explain_missing_type(err)
        if explanation is None:
            raise
        raise KeyError(explanation) from err
