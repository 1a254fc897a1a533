"""Reference implementations (timm, the ``fastervit`` package) that tests and benchmarks compare against.

The packages are optional: they are installed for the tests (requirements/tests.txt), and :func:`build_reference`
says which one to install when it is missing.
"""
import importlib
import sys
import warnings

import torch.nn as nn

# timm's model modules the references come from (imported with timm, so that create_model knows their names)
_TIMM_MODEL_MODULES = ('timm.models.repvit', 'timm.models.edgenext')


def import_timm():
    """Import timm with its RepViT and EdgeNeXt model modules and return it."""
    import timm
    for name in _TIMM_MODEL_MODULES:
        importlib.import_module(name)
    return timm


def import_fastervit():
    """Import the ``fastervit`` package's model module (official FasterViT, PyPI 1.0.0) and return it;
    ``create_model`` lives in ``fastervit.models.registry``."""
    if 'fastervit.models.faster_vit' in sys.modules:
        return sys.modules['fastervit.models.faster_vit']
    import_timm()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # re-registering names in timm's registry, deprecated timm paths
        return importlib.import_module('fastervit.models.faster_vit')


def _declared_references() -> dict:
    from mmlightvit.models.backbones import FAMILIES
    return {cls.__name__: cls.reference_models for cls in FAMILIES if cls.reference_models}


#: family -> (package, {arch: model name}) as each backbone class declares it (``reference_models``): the
#: classifiers of timm / fastervit whose trunk is the same network as our backbone, with checkpoints our
#: ``convert_checkpoint`` reads.
REFERENCE_MODELS = _declared_references()


def build_reference(family: str, arch: str) -> nn.Module:
    """The reference implementation of ``family``/``arch`` (random weights, eval mode).

    Its ``forward_features`` runs the same trunk as our backbone's forward; load its ``state_dict()`` into ours with
    ``backbone.convert_checkpoint`` to compare outputs.
    """
    if family not in REFERENCE_MODELS:
        raise ValueError(f'No installable reference implementation for {family}; references exist for '
                         f'{", ".join(sorted(REFERENCE_MODELS))}.')
    package, names = REFERENCE_MODELS[family]
    if arch not in names:
        raise ValueError(f'No {package} reference for {family} arch {arch!r}; known: {", ".join(names)}.')
    try:
        if package == 'timm':
            return import_timm().create_model(names[arch]).eval()
        import_fastervit()
        from fastervit.models.registry import create_model
        return create_model(names[arch], pretrained=False).eval()
    except ImportError as error:
        raise ImportError(f'{family} is compared against the {package} package, which is not installed '
                          f'(pip install -r requirements/tests.txt; tools/install.sh installs it): {error}') from error
