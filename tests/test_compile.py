"""torch.compile of every backbone family on the CPU: whole-graph capture and outputs equal to eager."""
import copy

import pytest
import torch
import torch._dynamo as dynamo

from mmlightvit.models.layers import fuse_model
from mmlightvit.registry import MODELS

SMALLEST = {'RepViT': 'm0.9', 'EdgeNeXt': 'xx-small', 'FasterViT': '0', 'TransNeXt': 'micro'}
# The smallest variants with one block per stage: every kind of block is traced, at a fraction of the cost.
ONE_BLOCK = {
    'RepViT': dict(widths=(48, 96, 192, 384), depths=(1, 1, 1, 1)),
    'EdgeNeXt': dict(widths=(24, 48, 88, 168), depths=(1, 1, 1, 1), num_heads=(4, 4, 4, 4)),
    'FasterViT': dict(dim=64, in_dim=64, depths=(1, 1, 1, 1), num_heads=(2, 4, 8, 16)),
    'TransNeXt': dict(widths=(48, 96, 192, 384), depths=(1, 1, 1, 1), num_heads=(2, 4, 8, 16)),
}
# Two sizes, the second not a multiple of the largest stride: padding paths and a recompile for the second shape.
SIZES = [(64, 96), (72, 104)]


def _backbone(family: str, arch=None) -> torch.nn.Module:
    torch.manual_seed(0)
    arch = arch or SMALLEST[family]
    return MODELS.build(dict(type=f'mmlightvit.{family}', arch=arch, out_indices=(0, 1, 2, 3))).eval()


def _assert_same(eager, compiled):
    assert len(eager) == len(compiled)
    for a, b in zip(eager, compiled):
        assert a.shape == b.shape
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('family', sorted(SMALLEST))
def test_backbone_forward_graph_breaks(family):
    model = _backbone(family, ONE_BLOCK[family])
    dynamo.reset()
    with torch.no_grad():
        explanation = dynamo.explain(model)(torch.randn(1, 3, *SIZES[0]))
    if family == 'TransNeXt':
        # The only breaks: each stage looks up its size-dependent tables eagerly (torch.compiler.disable on
        # TransNeXt.stage_context: torch.unique has a data-dependent shape); the blocks of a stage are one graph.
        reasons = [str(r.user_stack[-1]) for r in explanation.break_reasons]
        assert reasons and all('forward_stage' in r for r in reasons), reasons
    else:
        assert explanation.graph_break_count == 0, explanation.break_reasons
        assert explanation.graph_count == 1


def _compiled_matches_eager(family, **options):
    model = _backbone(family, ONE_BLOCK[family])
    dynamo.reset()
    compiled = torch.compile(model, backend='aot_eager', fullgraph=family != 'TransNeXt', **options)
    with torch.no_grad():
        for size in SIZES:
            x = torch.randn(2, 3, *size)
            _assert_same(model(x), compiled(x))


@pytest.mark.parametrize('family', sorted(SMALLEST))
def test_compiled_backbone_matches_eager(family):
    # aot_eager: dynamo capture plus AOTAutograd's functionalised graph, run with eager kernels, so every family's
    # graph is checked without paying for code generation (inductor is tested once below). dynamic=False: each size
    # compiles a static graph of its own; tracing with symbolic sizes costs up to ten times as much (FasterViT: 45 s
    # instead of 3), so the dynamic recompile is tested once, below.
    _compiled_matches_eager(family, dynamic=False)


def test_second_size_recompiles_with_dynamic_sizes():
    # torch.compile's default for a new input size: the graph is recompiled with symbolic height and width
    # (automatic dynamic shapes), as a detector's varying image sizes do; RepViT is the cheapest family to trace so.
    _compiled_matches_eager('RepViT')


def test_inductor_compiles_fused_repvit():
    # The deployment form: re-parameterised, then compiled with the default backend (C++ code generation).
    model = fuse_model(copy.deepcopy(_backbone('RepViT'))).eval()
    dynamo.reset()
    compiled = torch.compile(model)
    with torch.no_grad():
        x = torch.randn(1, 3, *SIZES[0])
        _assert_same(model(x), compiled(x))


def test_compiled_backbone_trains():
    # Forward and backward through a compiled graph give the eager gradients.
    model = _backbone('EdgeNeXt', ONE_BLOCK['EdgeNeXt']).train()
    reference = copy.deepcopy(model)
    dynamo.reset()
    compiled = torch.compile(model, backend='aot_eager', fullgraph=True)
    x = torch.randn(2, 3, *SIZES[0])
    sum(o.sum() for o in compiled(x)).backward()
    sum(o.sum() for o in reference(x)).backward()
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-4, msg=name)
