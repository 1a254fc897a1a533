"""The DINO and Mask2Former configs of TransNeXt and FasterViT against the official code: whole-model parameter
counts, released TransNeXt DINO models that load as they are, and the official optimizer parameter groups,
parameter by parameter.

No release can be downloaded here: the release test writes a file in the released layout (backbone under the
official TransNeXt names, the rest under the names mmdet 3.x writes) around a randomly initialised model."""
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import MODELS, init_default_scope

from mmlightvit.utils import CheckpointError
from tests.conftest import read_config
from tests.test_reproduction import assert_same_state, evaluation_runner, released_layout

ROOT = Path(__file__).resolve().parents[1]
TRANSNEXT_DINO = {
    # config: whole-model parameters in the official README (detection/dino), in millions
    'configs/transnext/dino-4scale_transnext-tiny_coco.py': 47.8,
    'configs/transnext/dino-5scale_transnext-tiny_coco.py': 48.1,
    'configs/transnext/dino-5scale_transnext-small_coco.py': 69.6,
    'configs/transnext/dino-5scale_transnext-base_coco.py': 110,
}


def _config(path: str) -> Config:
    cfg = read_config(path)
    cfg.model.backbone.init_cfg = None  # no download: the weights change neither counts nor parameter groups
    return cfg


def _build_on_meta(cfg: Config) -> nn.Module:
    """The detector with parameters on the meta device: names, shapes and modules without the memory."""
    init_default_scope(cfg.default_scope)
    with torch.device('meta'):
        return MODELS.build(cfg.model)


def _count(module: nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


@pytest.mark.parametrize('config', list(TRANSNEXT_DINO))
def test_transnext_dino_params_match_official(config):
    official = TRANSNEXT_DINO[config]
    digits = len(str(official).split('.')[1]) if '.' in str(official) else 0
    params = _count(_build_on_meta(_config(config)))
    assert round(params, digits) == official, params


def test_fastervit_4_21k_backbone_is_the_official_21k_model():
    """Without carrier tokens and with the classifier (head 1568 -> 1000, final BatchNorm) the backbone of the 21K
    config has the released FasterViT-4-21K-224's 271.9M parameters (official README)."""
    cfg = _config('configs/fastervit/dino-4scale_fastervit-4-21k_coco.py')
    backbone = _build_on_meta(cfg).backbone
    assert backbone.window_sizes == (14, 7) and not backbone.use_carrier_tokens
    assert not any('hat_' in name or 'global_tokenizer' in name for name, _ in backbone.named_parameters())
    classifier = 1568 * 1000 + 1000 + 2 * 1568
    # out_norm_cfg adds a BatchNorm per returned map (official norm1-3), which the classifier does not have
    out_norms = sum(2 * c for c in (392, 784, 1568))
    assert round(_count(backbone) + (classifier - out_norms) / 1e6, 1) == 271.9


# The 4-scale release has the same layout less one level of the neck and the encoder: the 5-scale one stands for both.
@pytest.mark.parametrize('config', ['configs/transnext/dino-5scale_transnext-tiny_coco.py'])
def test_transnext_dino_release_loads_strictly(config, tmp_path):
    """A file as the official DINO releases are (mmengine `meta` + `state_dict`, TransNeXt's official names under
    `backbone.`, mmdet 3.x head names) loads strictly through the tools/test.py path and equals our model."""
    reference = evaluation_runner(config, tmp_path / 'reference').model
    release = released_layout(reference)
    assert 'backbone.patch_embed4.proj.weight' in release and 'backbone.norm1.weight' in release
    meta = dict(mmengine_version='0.7.3', dataset_meta=dict(classes=('person', )), epoch=12)
    torch.save({'meta': meta, 'state_dict': release}, tmp_path / 'release.pth')
    assert_same_state(evaluation_runner(config, tmp_path / 'loaded', str(tmp_path / 'release.pth')).model.state_dict(),
                      reference.state_dict())

    del release['backbone.norm4.weight']
    torch.save({'meta': meta, 'state_dict': release}, tmp_path / 'damaged.pth')
    with pytest.raises(CheckpointError, match=r'missing keys: backbone\.stages\.3\.norm\.weight'):
        evaluation_runner(config, tmp_path / 'damaged', str(tmp_path / 'damaged.pth'))


# ------------------------------------------------------------------------------------------------------------------
# Optimizer parameter groups


def _groups(module: nn.Module, optimizer: dict, paramwise_cfg: dict) -> dict:
    """{parameter id: (lr, weight decay)} as mmengine's DefaultOptimWrapperConstructor assigns them."""
    constructor = DefaultOptimWrapperConstructor(dict(optimizer=optimizer), paramwise_cfg)
    params = []
    constructor.add_params(params, module)
    base_lr, base_wd = optimizer['lr'], optimizer['weight_decay']
    return {id(group['params'][0]): (group.get('lr', base_lr), group.get('weight_decay', base_wd))
            for group in params}


def _official_transnext_custom_keys(depths):
    """detection/dino/configs/dino-*_transnext_*-12e_coco.py, as written there (official module names)."""
    backbone_nodecay = dict(lr_mult=0.1, decay_mult=0)
    backbone_decay = dict(lr_mult=0.1)
    custom_keys = {'attn.query_embedding': backbone_nodecay, 'relative_pos_bias_local': backbone_nodecay,
                   'cpb': backbone_nodecay, 'temperature': backbone_nodecay, 'attn.learnable': backbone_decay,
                   'attn.q.weight': backbone_decay, 'attn.q.bias': backbone_nodecay,
                   'attn.kv.weight': backbone_decay, 'attn.kv.bias': backbone_nodecay,
                   'attn.qkv.weight': backbone_decay, 'attn.qkv.bias': backbone_nodecay,
                   'attn.sr.weight': backbone_decay, 'attn.sr.bias': backbone_nodecay,
                   'attn.norm': backbone_nodecay, 'attn.proj.weight': backbone_decay,
                   'attn.proj.bias': backbone_nodecay, 'mlp.fc1.weight': backbone_decay,
                   'mlp.fc2.weight': backbone_decay, 'mlp.fc1.bias': backbone_nodecay,
                   'mlp.fc2.bias': backbone_nodecay, 'mlp.dwconv.dwconv.weight': backbone_decay,
                   'mlp.dwconv.dwconv.bias': backbone_nodecay}
    custom_keys.update({f'backbone.norm{stage_id + 1}': backbone_nodecay for stage_id in range(len(depths) - 1)})
    custom_keys.update({f'backbone.patch_embed{stage_id + 1}.norm': backbone_nodecay
                        for stage_id in range(len(depths) - 1)})
    custom_keys.update({f'backbone.patch_embed{stage_id + 1}.proj.weight': backbone_decay
                        for stage_id in range(len(depths) - 1)})
    custom_keys.update({f'backbone.patch_embed{stage_id + 1}.proj.bias': backbone_nodecay
                        for stage_id in range(len(depths) - 1)})
    custom_keys.update({f'backbone.block{stage_id + 1}.{block_id}.norm': backbone_nodecay
                        for stage_id, num_blocks in enumerate(depths) for block_id in range(num_blocks)})
    return custom_keys


class _OfficialTransNeXtTree(nn.Module):
    """Our TransNeXt's modules under the official module names (patch_embed{i}, block{i}, norm{i})."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        for i, stage in enumerate(backbone.stages):
            self.add_module(f'patch_embed{i + 1}', backbone.stem if i == 0 else stage.patch_embed)
            self.add_module(f'block{i + 1}', stage.blocks)
            self.add_module(f'norm{i + 1}', stage.norm)


def _with_official_backbone_names(model: nn.Module) -> nn.Module:
    """The same detector (the same parameter objects) with the backbone's official module tree."""
    view = nn.Module()
    for name, child in model.named_children():
        view.add_module(name, _OfficialTransNeXtTree(child) if name == 'backbone' else child)
    for name, param in model.named_parameters(recurse=False):
        view.register_parameter(name, param)
    return view


MASK2FORMER_EMBEDDINGS = {f'decode_head.{name}': dict(lr_mult=1.0, decay_mult=0.0)
                          for name in ('query_embed', 'query_feat', 'level_embed')}


@pytest.mark.parametrize('config, head_keys', [
    ('configs/transnext/dino-4scale_transnext-tiny_coco.py', {}),
    ('configs/transnext/dino-5scale_transnext-base_coco.py', {}),
    # segmentation/mask2former adds the decoder's embeddings (full lr, no decay) to the same backbone keys
    ('configs/transnext/mask2former_transnext-tiny_ade20k-512x512-160k.py', MASK2FORMER_EMBEDDINGS),
])
def test_transnext_parameter_groups_match_official(config, head_keys):
    """Every parameter of the detector / segmentor gets the lr and weight decay the official config gives it: its
    custom keys on the official names, on mmdet 3.0.0's DINO / mmseg 1.0.0's Mask2Former base (no 'backbone' key).
    The last stage's patch embedding and norm match no official key and train at the full lr."""
    cfg = _config(config)
    model = _build_on_meta(cfg)
    official_view = _with_official_backbone_names(model)
    official_names = {name for name, _ in official_view.backbone.named_parameters()}
    assert official_names == {k for k in model.backbone.to_official_state_dict() if 'running_' not in k}

    official = _groups(
        official_view, dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
        dict(custom_keys={**_official_transnext_custom_keys(model.backbone.depths), **head_keys}, bias_decay_mult=0,
             norm_decay_mult=0, flat_decay_mult=0))
    ours = _groups(model, cfg.optim_wrapper.optimizer, cfg.optim_wrapper.paramwise_cfg)
    names = {id(p): name for name, p in model.named_parameters()}
    assert set(ours) == set(official) == set(names)
    assert [names[i] for i in ours if ours[i] != official[i]] == []

    full_lr = sorted(name for name, p in model.backbone.named_parameters() if ours[id(p)][0] == 1e-4)
    assert full_lr == ['stages.3.norm.bias', 'stages.3.norm.weight', 'stages.3.patch_embed.norm.bias',
                       'stages.3.patch_embed.norm.weight', 'stages.3.patch_embed.proj.bias',
                       'stages.3.patch_embed.proj.weight']
    if cfg.model.type == 'DINO':
        assert cfg.optim_wrapper.accumulative_counts == 2 and cfg.train_dataloader.batch_size == 1
        assert cfg.optim_wrapper.clip_grad == dict(max_norm=0.1, norm_type=2)
        # mmengine's --auto-scale-lr counts images per iteration (GPUs x batch_size), not per accumulated step
        assert cfg.auto_scale_lr.base_batch_size == 8 * cfg.train_dataloader.batch_size
    else:
        assert cfg.optim_wrapper.clip_grad == dict(max_norm=0.01, norm_type=2)
        assert cfg.train_dataloader.batch_size == 2 and cfg.auto_scale_lr.base_batch_size == 16


def test_fastervit_dino_parameter_groups_match_official():
    """The official DINO code's 'default' parameter groups (util/get_param_dicts.py): the backbone at lr 1e-5, the
    rest at 1e-4 (lr_linear_proj_mult is not applied in that mode), weight decay 1e-4 on every parameter."""
    cfg = _config('configs/fastervit/dino-4scale_fastervit-0_coco.py')
    model = _build_on_meta(cfg)
    ours = _groups(model, cfg.optim_wrapper.optimizer, cfg.optim_wrapper.paramwise_cfg)
    for name, param in model.named_parameters():
        expected = (1e-5 if name.startswith('backbone.') else 1e-4, 1e-4)
        assert ours[id(param)] == pytest.approx(expected), name
    assert cfg.optim_wrapper.clip_grad == dict(max_norm=0.1, norm_type=2)
    assert cfg.train_dataloader.batch_size == 2 and cfg.train_cfg.max_epochs == 12
    assert [s.milestones for s in cfg.param_scheduler] == [[11]]
    assert cfg.model.dn_cfg.box_noise_scale == 0.4 and cfg.model.dn_cfg.label_noise_scale == 0.5
    # the official backbone's BatchNorms on the returned maps, under its names
    assert sorted(n for n, _ in model.backbone.named_children() if n.startswith('norm')) == ['norm1', 'norm2', 'norm3']
