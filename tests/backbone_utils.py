"""Helpers shared by the backbone test modules (tests/test_<family>.py)."""
import pytest
import torch
import torch.nn as nn


@pytest.fixture(scope='module', autouse=True)
def single_thread():
    """One intra-op thread for a backbone test module (import this fixture into it): the tiny CPU workloads gain
    little from more, and on a small machine that is busy with something else multi-threaded kernels slow down
    many times over."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
