"""Helpers shared by the backbone test modules (tests/test_<family>.py, tests/test_backbone_contract.py) and the
other tests that need BatchNorm with non-trivial statistics; their shared fixture (single_thread) is in
tests/conftest.py."""
import importlib.util
from pathlib import Path

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm


@torch.no_grad()
def randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial running statistics and affine parameters; returns ``model``.

    A fresh BatchNorm is the identity in eval mode and some blocks zero-init their last one (RepViT's FFN), so
    folding, layout conversion, ``norm_eval`` and gradient checks only mean something after this. Values are drawn
    per BatchNorm, in module order: mean ~ N(0, 0.1), var ~ U(0.5, 1.5), weight ~ U(0.5, 1.5), bias ~ N(0, 0.1).
    """
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            shape = (m.num_features, )
            if m.track_running_stats:
                m.running_mean.copy_(torch.randn(shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(shape, generator=gen) + 0.5)
            if m.affine:
                m.weight.copy_(torch.rand(shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(shape, generator=gen) * 0.1)
    return model


def num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def load_via_init_cfg(backbone_cls, arch, path, **kwargs) -> nn.Module:
    """Build ``backbone_cls(arch)`` with ``init_cfg=dict(type='Pretrained', checkpoint=path)`` and load it."""
    model = backbone_cls(arch, init_cfg=dict(type='Pretrained', checkpoint=str(path)), **kwargs)
    model.init_weights()
    return model


def assert_same_weights(model: nn.Module, state: dict) -> None:
    own = model.state_dict()
    assert set(own) == set(state)
    for key, value in state.items():
        assert torch.equal(own[key], value), key


def assert_with_cp_equivalent(plain: nn.Module, checkpointed: nn.Module, x: torch.Tensor) -> None:
    """The same outputs and parameter gradients with and without gradient checkpointing (same weights)."""
    plain.train(), checkpointed.train()
    outs_a, outs_b = plain(x), checkpointed(x)
    sum(o.square().mean() for o in outs_a).backward()
    sum(o.square().mean() for o in outs_b).backward()
    for a, b in zip(outs_a, outs_b):
        torch.testing.assert_close(a, b)
    grads = dict(checkpointed.named_parameters())
    for name, p in plain.named_parameters():
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad, grads[name].grad, msg=name)


def converter_main():
    """``main`` of tools/model_converters/to_mmlightvit.py (tools are scripts, not a package)."""
    tool = Path(__file__).resolve().parents[1] / 'tools' / 'model_converters' / 'to_mmlightvit.py'
    spec = importlib.util.spec_from_file_location('to_mmlightvit', tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main
