"""Reference implementations (timm, the ``fastervit`` package) that tests and benchmarks compare against.

Importable without their heavy optional dependencies (torchvision); the packages themselves are optional: they are
installed for the tests, and :func:`build_reference` says which one to install when it is missing.
"""
import enum
import importlib
import sys
import types
import warnings

import torch
import torch.nn as nn

# What timm 1.0.x reads from torchvision when its model modules are imported.
_TIMM_MODEL_MODULES = ('timm.models.repvit', 'timm.models.edgenext')


class _FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed statistics and affine parameters stored as buffers (torchvision's semantics)."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer('weight', torch.ones(num_features))
        self.register_buffer('bias', torch.zeros(num_features))
        self.register_buffer('running_mean', torch.zeros(num_features))
        self.register_buffer('running_var', torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.pop(prefix + 'num_batches_tracked', None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f'{self.weight.shape[0]}, eps={self.eps}'


class _InterpolationMode(enum.Enum):
    NEAREST = 'nearest'
    NEAREST_EXACT = 'nearest-exact'
    BILINEAR = 'bilinear'
    BICUBIC = 'bicubic'
    BOX = 'box'
    HAMMING = 'hamming'
    LANCZOS = 'lanczos'


class _Unavailable:
    """Stands for any torchvision object timm refers to at import time; using it raises a clear error."""

    def __init__(self, name: str):
        self._name = name

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f'{self._name} is a stand-in: torchvision is not installed, so timm was imported with '
                           'mmlightvit.analysis.reference_models.import_timm() for its model definitions only.')

    def __mro_entries__(self, bases):  # timm subclasses e.g. transforms.ToTensor at import time
        unavailable = self

        class _Base:

            def __init__(self, *args, **kwargs):
                unavailable()

        _Base.__name__ = self._name.rsplit('.', 1)[-1]
        return (_Base, )

    def __getattr__(self, attr: str):
        if attr.startswith('__'):
            raise AttributeError(attr)
        return _Unavailable(f'{self._name}.{attr}')


def _stub_module(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    module.__path__ = []  # a package, so submodule imports resolve through sys.modules

    def __getattr__(attr: str):
        if attr.startswith('__'):
            raise AttributeError(attr)
        return _Unavailable(f'{name}.{attr}')

    module.__getattr__ = __getattr__
    return module


def _torchvision_stand_in() -> dict:
    ops_misc = _stub_module('torchvision.ops.misc', FrozenBatchNorm2d=_FrozenBatchNorm2d)
    functional = _stub_module('torchvision.transforms.functional', InterpolationMode=_InterpolationMode)
    transforms = _stub_module('torchvision.transforms', functional=functional, InterpolationMode=_InterpolationMode)
    ops = _stub_module('torchvision.ops', misc=ops_misc)
    datasets = _stub_module('torchvision.datasets')
    root = _stub_module('torchvision', ops=ops, transforms=transforms, datasets=datasets, __version__='0.0.0+stub')
    return {
        'torchvision': root,
        'torchvision.ops': ops,
        'torchvision.ops.misc': ops_misc,
        'torchvision.transforms': transforms,
        'torchvision.transforms.functional': functional,
        'torchvision.datasets': datasets,
    }


def import_timm():
    """Import timm (and its RepViT model module) for use as a reference implementation; return the module.

    Why: timm 1.0.31 imports torchvision at import time (``torchvision.ops.misc.FrozenBatchNorm2d`` in its layers,
    ``torchvision.transforms`` / ``.functional.InterpolationMode`` / ``torchvision.datasets`` in ``timm.data``),
    but no torchvision build works with the CPU torch 2.13 this project pins, so ``import timm`` fails although
    the model definitions the tests need use none of it. When ``import torchvision`` fails, a minimal stand-in
    package is put into ``sys.modules`` for the duration of the import: ``FrozenBatchNorm2d`` is a correct small
    frozen-BN module, ``InterpolationMode`` a small Enum, and everything else in transforms / functional /
    datasets raises a clear error when used. Afterwards every ``torchvision*`` entry is removed from
    ``sys.modules``, so nothing else in the process (mmengine, mmdet, a later real import) sees the stand-in;
    timm's modules keep their references to the few names they imported. With a working torchvision, this is
    plain ``import timm``.
    """
    if 'timm' in sys.modules:
        timm = sys.modules['timm']
        for name in _TIMM_MODEL_MODULES:
            importlib.import_module(name)
        return timm

    def _import():
        import timm
        for name in _TIMM_MODEL_MODULES:
            importlib.import_module(name)
        return timm

    return _import_with_torchvision_stand_in(_import)


def _import_with_torchvision_stand_in(importer):
    """Run ``importer()`` with a real torchvision if one imports, else with the stand-in of
    :func:`_torchvision_stand_in` in ``sys.modules``, removed again afterwards (see :func:`import_timm`)."""
    try:
        import torchvision  # noqa: F401
    except Exception:  # missing or broken (e.g. built for another torch)
        for name in [n for n in sys.modules if n == 'torchvision' or n.startswith('torchvision.')]:
            del sys.modules[name]
    else:
        return importer()

    sys.modules.update(_torchvision_stand_in())
    try:
        with warnings.catch_warnings():  # timm's own deprecation notices are not what the tests are about
            warnings.simplefilter('ignore', DeprecationWarning)
            return importer()
    finally:
        for name in [n for n in sys.modules if n == 'torchvision' or n.startswith('torchvision.')]:
            del sys.modules[name]


def import_fastervit():
    """Import the ``fastervit`` package's model module (official FasterViT, PyPI 1.0.0) and return it.

    ``fastervit.models.faster_vit`` imports timm at import time (its layers and model registry), which needs the
    same torchvision stand-in as :func:`import_timm`; ``create_model`` lives in ``fastervit.models.registry``.
    """
    if 'fastervit.models.faster_vit' in sys.modules:
        return sys.modules['fastervit.models.faster_vit']
    import_timm()

    def _import():
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # re-registering names in timm's registry, deprecated timm paths
            return importlib.import_module('fastervit.models.faster_vit')

    return _import_with_torchvision_stand_in(_import)


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
                          f'(pip install --no-deps {package}; tools/install.sh installs it): {error}') from error
