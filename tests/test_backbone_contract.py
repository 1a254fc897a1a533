"""The backbone contract of :class:`mmlightvit.models.layers.backbone.LightBackbone`, checked once for every family.

Each test is parametrised over the package's families (``mmlightvit.models.backbones.FAMILIES``, checked against
``EXPECTED``: registered variants, aliases, custom arch keys, written out here) or over small models of them
(``CASES``: RepViT M0.9, also with the segmentation outputs; EdgeNeXt XX-Small with LayerNorm and with BatchNorm;
FasterViT and TransNeXt with fewer blocks). Faithfulness to the reference implementations, layout
conversion and the ablation switches stay in tests/test_<family>.py.
"""
import json
import math
import re
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Dict, Tuple, Union

import pytest
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmlightvit.models import backbones
from mmlightvit.registry import MODELS
from mmlightvit.utils import CheckpointError
from tests.backbone_utils import assert_same_weights, assert_with_cp_equivalent, load_via_init_cfg, randomise_bn

pytestmark = pytest.mark.usefixtures('single_thread')
STRIDES = (4, 8, 16, 32)


@dataclass(frozen=True)
class Expected:
    """What one family registers, written out as the oracle for the family class's own tables."""
    archs: Tuple[str, ...]  # the registered variant names, in order
    aliases: Dict[str, str]  # alias -> variant name
    unknown: str  # a name that is no variant
    required_keys: Tuple[str, ...]  # of a custom arch dict


# {family class name: class}: the families the package serves (the converter, the reference builder); each needs
# an EXPECTED entry and a CASES model (test_every_family_is_covered).
FAMILIES = {cls.__name__: cls for cls in backbones.FAMILIES}
EXPECTED = {
    'RepViT': Expected(('m0.9', 'm1.0', 'm1.1', 'm1.5', 'm2.3'),
                     {'m1_1': 'm1.1', 'M1.1': 'm1.1', 'repvit_m1_1': 'm1.1', 'repvit-m1.1': 'm1.1', 'm11': 'm1.1'},
                     'm9.9', ('widths', 'depths')),
    'EdgeNeXt': Expected(('xx-small', 'x-small', 'small', 'base', 'xx-small-bn-hs', 'x-small-bn-hs', 'small-bn-hs'),
                         {'xxs': 'xx-small', 'XX_Small': 'xx-small', 'edgenext_x_small': 'x-small', 's': 'small',
                          'B': 'base', 'edgenext_small_bn_hs': 'small-bn-hs', 'xxs-bn-hs': 'xx-small-bn-hs',
                          'x_small_bn_hs': 'x-small-bn-hs'},
                         'tiny', ('widths', 'depths', 'num_heads')),
    'FasterViT': Expected(('0', '1', '2', '3', '4', '5', '6'),
                          {'faster_vit_0': '0', 'fastervit-1': '1', 'FasterViT_2': '2', 'faster_vit_6_224': '6'}, '7',
                          ('dim', 'in_dim', 'depths', 'num_heads')),
    'TransNeXt': Expected(('micro', 'tiny', 'small', 'base'),
                          {'m': 'micro', 'T': 'tiny', 'transnext_small': 'small', 'TransNeXt-Base': 'base',
                           'b': 'base'},
                          'huge', ('widths', 'depths', 'num_heads')),
}


@dataclass(frozen=True)
class Case:
    """A small model of one family: what the per-model tests build."""
    name: str
    family: str
    arch: Union[str, dict]
    has_bn: bool
    kwargs: dict = field(default_factory=dict)

    def build(self, **kwargs) -> nn.Module:
        return FAMILIES[self.family](self.arch, **self.kwargs, **kwargs)


# FasterViT and TransNeXt with every kind of stage but few blocks (their smallest variants are 31M / 15M
# parameters): FasterViT with layer scale and carrier-token propagation (variants 3-6), TransNeXt Micro's widths.
FASTERVIT_FEW_BLOCKS = dict(dim=32, in_dim=16, depths=(1, 1, 3, 2), num_heads=(2, 2, 4, 8), layer_scale=1e-5,
                      do_propagation=True)
TRANSNEXT_FEW_BLOCKS = dict(widths=(48, 96, 192, 384), depths=(1, 1, 2, 1), num_heads=(2, 4, 8, 16))
CASES = [
    Case('RepViT-m0.9', 'RepViT', 'm0.9', has_bn=True),
    # Segmentation outputs: the next stage's pre-block belongs to a stage's output (frozen and decayed with it).
    Case('RepViT-m0.9-out_after_preblock', 'RepViT', 'm0.9', has_bn=True, kwargs=dict(out_after_preblock=True)),
    Case('EdgeNeXt-xx-small', 'EdgeNeXt', 'xx-small', has_bn=False),
    Case('EdgeNeXt-xx-small-bn-hs', 'EdgeNeXt', 'xx-small-bn-hs', has_bn=True),
    Case('FasterViT-few-blocks', 'FasterViT', FASTERVIT_FEW_BLOCKS, has_bn=True),
    Case('TransNeXt-few-blocks', 'TransNeXt', TRANSNEXT_FEW_BLOCKS, has_bn=False),
]
# Odd, wide and tall, and tiny inputs (32x32 leaves 1x1 at stride 32).
SIZES = [(65, 97), (33, 47), (97, 65), (32, 32)]
ODD_SIZE = (65, 97)

per_family = pytest.mark.parametrize('family', list(FAMILIES))
per_case = pytest.mark.parametrize('case', CASES, ids=[case.name for case in CASES])


def expected_hw(h: int, w: int):
    """``ceil(n / stride)`` for every family: RepViT's and FasterViT's 3x3 stride-2 padding-1 convs, TransNeXt's
    overlapping 7x7/4 and 3x3/2 convs each round up, and EdgeNeXt's patch convs pad the right/bottom edge."""
    return [(math.ceil(h / s), math.ceil(w / s)) for s in STRIDES]


def small_model(case: Case, seed: int = 0, **kwargs) -> nn.Module:
    """Seeded weights, non-trivial BatchNorm (RepViT's zero-initialised FFN BatchNorm would stop gradients)."""
    torch.manual_seed(seed)
    return randomise_bn(case.build(**kwargs), seed=seed)


def odd_input(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, *ODD_SIZE, generator=torch.Generator().manual_seed(1))


def loss_of(outs) -> torch.Tensor:
    return sum(o.square().mean() for o in outs)


# ------------------------------------------------------------------------------------------------------------------
# Variants


def test_every_family_is_covered():
    """The package's families and this file's oracle name the same families, and each has a small model here."""
    assert sorted(FAMILIES) == sorted(EXPECTED)
    assert sorted({case.family for case in CASES}) == sorted(FAMILIES)


@per_family
def test_registered_arch_names(family):
    cls, f = FAMILIES[family], EXPECTED[family]
    assert list(cls.arch_settings) == list(f.archs)
    for name in f.archs:
        assert cls.resolve_arch(name.upper()) == cls.arch_settings[name]  # case does not matter
        with torch.device('meta'):  # no memory even for the 1.36B-parameter FasterViT-6
            model = cls(name)
        assert len(model.stage_channels) == 4 and model.out_channels == model.stage_channels
        assert model.feature_info == [dict(num_chs=c, reduction=s, module=f'stages.{i}')
                                      for i, (c, s) in enumerate(zip(model.stage_channels, STRIDES))]


@pytest.mark.parametrize('family, alias, name', [(family, alias, name) for family in FAMILIES if family in EXPECTED
                                                 for alias, name in EXPECTED[family].aliases.items()])
def test_arch_aliases(family, alias, name):
    cls = FAMILIES[family]
    assert cls.resolve_arch(alias) == cls.arch_settings[name]


@per_family
def test_unknown_arch_lists_the_known_names(family):
    cls, f = FAMILIES[family], EXPECTED[family]
    with pytest.raises(ValueError, match=f'Unknown {family} arch {re.escape(repr(f.unknown))}') as err:
        cls(f.unknown)
    for name in (*f.archs, *cls.arch_aliases):
        assert repr(name) in str(err.value)


@per_family
def test_custom_arch_dict_and_registry(family):
    """A dict with a variant's settings builds that variant (through the registry too); a missing key is named."""
    cls, f = FAMILIES[family], EXPECTED[family]
    settings = cls.arch_settings[f.archs[0]]
    with torch.device('meta'):
        custom = MODELS.build(dict(type=f'mmlightvit.{family}', arch=dict(settings)))
        named = cls(f.archs[0])
    assert type(custom) is cls
    assert {k: v.shape for k, v in custom.state_dict().items()} == {k: v.shape for k, v in named.state_dict().items()}
    for key in f.required_keys:
        with pytest.raises(ValueError, match=rf"missing \['{key}'\]"):
            cls({k: v for k, v in settings.items() if k != key})


@per_family
def test_per_stage_settings_need_one_entry_per_stage(family):
    """A custom arch with a stage too few is an error naming the family, the setting and what was given."""
    cls = FAMILIES[family]
    settings = dict(cls.arch_settings[EXPECTED[family].archs[0]], depths=(1, 1, 1))
    with pytest.raises(ValueError, match=re.escape(f'{family} needs 4 depths (one per stage), got (1, 1, 1).')):
        cls(settings)


# ------------------------------------------------------------------------------------------------------------------
# Outputs


@per_case
@pytest.mark.parametrize('size', SIZES, ids=[f'{h}x{w}' for h, w in SIZES])
def test_output_channels_and_strides(case, size):
    model = case.build().eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *size))
    assert [o.shape[1] for o in outs] == model.out_channels == model.stage_channels
    assert [tuple(o.shape[2:]) for o in outs] == expected_hw(*size)
    assert all(torch.isfinite(o).all() for o in outs)
    # mmcv's compiled ops (the R-CNN heads' RoIAlign) read the buffer as contiguous NCHW whatever the strides
    assert all(o.is_contiguous() for o in outs)


@per_case
def test_out_indices_and_out_norms(case):
    full = small_model(case).eval()
    x = torch.randn(1, 3, 33, 47)
    subset = case.build(out_indices=(1, -1)).eval()
    normed = case.build(out_indices=(0, 2), out_norm_cfg=dict(type='LN2d')).eval()
    subset.load_state_dict(full.state_dict())
    own_norms = {k: v for k, v in normed.state_dict().items() if re.match(r'norm\d\.', k)}
    normed.load_state_dict({**full.state_dict(), **own_norms})
    with torch.no_grad():
        outs, sub_outs, normed_outs = full(x), subset(x), normed(x)
        expected_normed = [normed.norm0(outs[0]), normed.norm2(outs[2])]
    assert subset.out_channels == [full.stage_channels[1], full.stage_channels[3]]
    assert [f['reduction'] for f in subset.feature_info] == [8, 32]
    for out, expected in zip(sub_outs, [outs[1], outs[3]]):
        torch.testing.assert_close(out, expected)
    assert hasattr(normed, 'norm0') and hasattr(normed, 'norm2')
    assert not hasattr(normed, 'norm1') and not hasattr(full, 'norm0')  # only where asked
    for out, expected in zip(normed_outs, expected_normed):
        torch.testing.assert_close(out, expected)
    assert not torch.allclose(normed_outs[0], outs[0])
    with pytest.raises(ValueError, match='out_indices'):
        case.build(out_indices=(4, ))


# ------------------------------------------------------------------------------------------------------------------
# Training


@per_case
def test_training_step_at_odd_size_reaches_every_parameter(case):
    model = small_model(case).train()
    outs = model(odd_input())
    assert [tuple(o.shape[2:]) for o in outs] == expected_hw(*ODD_SIZE)
    loss_of(outs).backward()
    no_grad = [n for n, p in model.named_parameters()
               if p.grad is None or not torch.isfinite(p.grad).all() or not p.grad.any()]
    assert not no_grad, f'no (finite, non-zero) gradient: {no_grad}'


@per_case
def test_frozen_stages(case):
    """frozen_stages=2: the stem and stages 0-1 get no gradient and stay in eval mode after ``model.train()``
    (frozen BatchNorm statistics do not move); outputs 0-1 carry no gradient, everything after trains."""
    model = small_model(case, frozen_stages=2).train()
    params = dict(model.named_parameters())
    frozen = {n for n, p in params.items() if not p.requires_grad}
    assert {n for n in params if n.startswith(('stem.', 'stages.0.', 'stages.1.'))} <= frozen
    assert not frozen & {n for n in params if n.startswith(('stages.2.blocks.', 'stages.3.'))}
    for name, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        if own:  # a module is in eval mode exactly when its parameters are frozen
            assert module.training == own[0].requires_grad, name
            assert len({p.requires_grad for p in own}) == 1, name
    frozen_bns = [m for n, m in model.named_modules()
                  if isinstance(m, _BatchNorm) and not any(p.requires_grad for p in m.parameters())]
    assert bool(frozen_bns) == case.has_bn  # the stem of every family with BatchNorm has some
    stats = [m.running_mean.clone() for m in frozen_bns]

    outs = model(odd_input())
    assert [o.requires_grad for o in outs] == [False, False, True, True]
    loss_of(outs[2:]).backward()
    for name, p in params.items():
        if name in frozen:
            assert p.grad is None, name
        else:
            assert p.grad is not None and p.grad.any(), name
    for m, before in zip(frozen_bns, stats):
        assert torch.equal(m.running_mean, before)


@per_case
def test_norm_eval_switches_only_batchnorm_to_eval(case):
    model = case.build(norm_eval=True).train()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bool(bns) == case.has_bn
    for name, module in model.named_modules():
        assert module.training != isinstance(module, _BatchNorm), name


@per_case
def test_norm_eval_keeps_batchnorm_statistics(case):
    if not case.has_bn:
        assert not any(isinstance(m, _BatchNorm) for m in case.build().modules())
        pytest.skip(f'{case.name} has no BatchNorm: norm_eval has no statistics to keep')
    model = small_model(case, norm_eval=True).train()
    moving = small_model(case).train()  # control: the same step without norm_eval moves every BatchNorm
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    x = odd_input()
    loss_of(model(x)).backward()
    moving(x)
    for key, value in model.named_buffers():
        assert torch.equal(value, buffers[key]), key
    bn_stats = [k for k in buffers if k.endswith('running_mean')]
    moving_buffers = dict(moving.named_buffers())
    assert bn_stats and all(not torch.equal(moving_buffers[k], buffers[k]) for k in bn_stats)


@per_case
def test_with_cp_same_outputs_and_gradients(case):
    """Gradient checkpointing recomputes every block in the backward pass and changes nothing else."""
    plain = small_model(case)
    checkpointed = case.build(with_cp=True)
    checkpointed.load_state_dict(plain.state_dict())
    calls = {}

    def count(model, key):  # pre-hooks: the recomputation stops as soon as it has what backward needs
        for s, stage in enumerate(model.stages):
            for b, block in enumerate(stage.blocks):
                block.register_forward_pre_hook(lambda *_, k=(key, s, b): calls.__setitem__(k, calls.get(k, 0) + 1))

    count(plain, 'plain'), count(checkpointed, 'cp')
    assert_with_cp_equivalent(plain, checkpointed, odd_input())
    assert len(calls) == 2 * sum(len(stage.blocks) for stage in plain.stages)  # every block ran in both
    assert {n for (key, *_), n in calls.items() if key == 'plain'} == {1}
    assert {n for (key, *_), n in calls.items() if key == 'cp'} == {2}


# ------------------------------------------------------------------------------------------------------------------
# Layer-wise learning-rate decay


@per_case
def test_layer_depth_follows_the_outputs(case):
    """``get_layer_depth``: the stem 0, every other backbone parameter 1 + the first output it influences (found
    from the gradients), the output norms and anything outside the backbone (neck, head) the top depth 5 of 6."""
    model = small_model(case, out_norm_cfg=dict(type='LN2d')).train()
    names, params = zip(*model.named_parameters())
    outs = model(odd_input())
    first_output = {}
    for i, out in enumerate(outs):
        grads = torch.autograd.grad(out.square().mean(), params, retain_graph=True, allow_unused=True)
        for name, grad in zip(names, grads):
            if grad is not None and grad.any():
                first_output.setdefault(name, i)
    for name in names:
        if name.startswith('stem.'):
            expected = 0
        elif re.match(r'norm\d\.', name):
            expected = 5
        else:
            expected = first_output[name] + 1
        assert model.get_layer_depth(name) == (expected, 6), name
        assert model.get_layer_depth(f'backbone.{name}', 'backbone.') == (expected, 6), name
    assert model.get_layer_depth('neck.lateral_convs.0.conv.weight', 'backbone.') == (5, 6)
    assert model.get_layer_depth('head.fc.weight', 'backbone.') == (5, 6)


# ------------------------------------------------------------------------------------------------------------------
# Pretrained loading


def _save(path, state, wrapper):
    if wrapper == 'detector':  # a whole detector: the loader keeps the backbone's keys, without the prefix
        state = {f'backbone.{k}': v for k, v in state.items()}
        state['neck.lateral_convs.0.conv.weight'] = torch.zeros(8, 4, 1, 1)
    torch.save(state if wrapper == 'bare' else {'state_dict': state, 'meta': {'epoch': 1}}, path)


@per_case
@pytest.mark.parametrize('wrapper', ['bare', 'mmengine', 'detector'])
def test_pretrained_loads_exactly(tmp_path, case, wrapper):
    source = small_model(case, seed=0)
    path = tmp_path / f'{wrapper}.pth'
    _save(path, source.state_dict(), wrapper)
    torch.manual_seed(1)  # another initialisation, so that loading has something to change
    assert_same_weights(load_via_init_cfg(type(source), case.arch, path, **case.kwargs), source.state_dict())


@per_case
@pytest.mark.parametrize('layout', ['own', 'official'])
@pytest.mark.parametrize('problem, kind', [('missing', 'missing keys'), ('extra', 'unexpected keys'),
                                           ('shape', 'wrong shapes')])
def test_checkpoint_mismatch_is_an_error_naming_the_key(tmp_path, case, layout, problem, kind):
    """Strict loading: the error names the checkpoint, the kind of mismatch and our key, also after the family's
    conversion of the official layout; the model keeps its weights (never a partial load)."""
    source = small_model(case, seed=0)
    state = dict(source.state_dict())
    last_block = f'stages.2.blocks.{len(source.stages[2].blocks) - 1}.'
    key = next(k for k, v in state.items() if k.startswith(last_block) and v.dim() >= 2)
    if problem == 'missing':
        del state[key]
    elif problem == 'extra':
        key = last_block + 'extra_weight'
        state[key] = torch.zeros(3)
    else:
        state[key] = torch.zeros([d + 1 for d in state[key].shape])
    if layout == 'official':
        state = source.to_official_state_dict(state)
    path = tmp_path / f'{problem}.pth'
    torch.save({'state_dict': state}, path)
    torch.manual_seed(1)
    model = case.build(init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=rf'{re.escape(str(path))}.*{kind}: (.*, )?{re.escape(key)}\b'):
        model.init_weights()
    assert_same_weights(model, before)


@per_case
def test_official_file_leaves_the_optional_output_norms_initialised(tmp_path, case):
    """No official file has the optional output norms (``out_norm_cfg``): loading one fills every other key and
    leaves the norms as initialised; a file in our own layout must have them."""
    source = small_model(case, seed=0)
    path = tmp_path / 'official.pth'
    torch.save(source.to_official_state_dict(), path)
    torch.manual_seed(1)
    model = case.build(out_norm_cfg=dict(type='LN2d'), init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    norms = {k: v.clone() for k, v in model.state_dict().items() if re.match(r'norm\d\.', k)}
    model.init_weights()
    assert norms
    assert_same_weights(model, {**source.state_dict(), **norms})
    own = tmp_path / 'own.pth'
    torch.save(source.state_dict(), own)
    with pytest.raises(CheckpointError, match=r'missing keys: norm0\.weight'):
        load_via_init_cfg(type(source), case.arch, own, out_norm_cfg=dict(type='LN2d'), **case.kwargs)


def another_variant(case: Case):
    """A variant of the case's family with other tensor shapes."""
    if isinstance(case.arch, dict):
        depths = list(case.arch['depths'])
        depths[2] += 1
        return dict(case.arch, depths=tuple(depths))
    archs = EXPECTED[case.family].archs
    return archs[archs.index(case.arch) + 1]


@per_case
def test_official_file_of_another_variant_is_refused_naming_both(tmp_path, case):
    other = FAMILIES[case.family](another_variant(case), **case.kwargs)
    path = tmp_path / 'other.pth'
    torch.save(other.to_official_state_dict(), path)
    model = case.build(init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    depths = tuple(model.infer_arch(other.state_dict())['depths'])
    with pytest.raises(CheckpointError, match=rf'The official {case.family} checkpoint has .*depths '
                                              rf'{re.escape(str(depths))}.*, but this {case.family} has .*wrong arch'):
        model.init_weights()


# ------------------------------------------------------------------------------------------------------------------
# Light imports

HEAVY_PACKAGES = ('mmcv', 'mmdet', 'mmseg', 'mmpretrain', 'timm', 'torchvision', 'fastervit')


@pytest.fixture(scope='module')
def heavy_packages_after_import():
    """{backbone module: heavy packages loaded once it is imported}, from one fresh interpreter (the backbones
    package imports all four modules anyway, so one process per module would show nothing more)."""
    modules = [cls.__module__ for cls in FAMILIES.values()]
    code = f'''import importlib, json, sys
found = {{}}
for module in {modules!r}:
    importlib.import_module(module)
    found[module] = sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY_PACKAGES)!r})
print(json.dumps(found))'''
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@per_family
def test_backbone_module_imports_without_the_heavy_packages(family, heavy_packages_after_import):
    """Importing a backbone module needs torch and mmengine only: no OpenMMLab task packages, timm or the
    reference implementations."""
    assert heavy_packages_after_import[FAMILIES[family].__module__] == []
