"""mmlightvit.analysis.complexity and tools/analysis/get_flops.py (CPU, about half a minute)."""
import copy
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmlightvit.analysis.complexity import BNLinear, count_arch, count_macs, count_model
from tests.backbone_utils import randomise_bn
from tests.conftest import run_python

ROOT = Path(__file__).resolve().parents[1]
DET_DEMO = ROOT / 'configs/repvit/mask-rcnn_repvit-m1.1_coco-demo.py'
SEG_DEMO = ROOT / 'configs/repvit/fpn_repvit-m1.1_ade20k-demo.py'

# /work/shared/reference/repvit.md: the deploy (fused) model with a single BN+Linear head, 224x224, fvcore MACs.
PAPER = {'m0.9': (5.07, 0.82), 'm1.1': (8.24, 1.34)}


@pytest.mark.parametrize('arch', sorted(PAPER))
def test_repvit_matches_paper_table(arch):
    result = count_arch(f'RepViT:{arch}', (224, 224), with_classifier=True, fused=True)
    params_m, macs_g = PAPER[arch]
    assert abs(result.params / 1e6 - params_m) <= 0.01
    assert abs(result.macs / 1e9 - macs_g) <= 0.01


def test_bn_linear_fuse_is_equivalent():
    head = randomise_bn(BNLinear(16, 10)).eval()
    x = torch.randn(4, 16)
    torch.testing.assert_close(head.fuse()(x), head(x), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------------------------
# Attention: every way of writing the two products is counted, and counted right.

B, N, C, HEADS = 2, 10, 32, 4  # batch, tokens, width, heads
D = C // HEADS


def analytic_attention_macs():
    projections = B * N * C * 3 * C + B * N * C * C  # qkv and output linear layers
    products = 2 * B * HEADS * N * N * D  # q @ k^T and attn @ v
    return projections + products


class ToyAttention(nn.Module):
    """ViT-style multi-head self-attention, its two products written with the op named by ``mode``."""

    def __init__(self, mode):
        super().__init__()
        self.mode = mode
        self.qkv = nn.Linear(C, 3 * C)
        self.proj = nn.Linear(C, C)

    def forward(self, x):
        q, k, v = self.qkv(x).reshape(B, N, 3, HEADS, D).permute(2, 0, 3, 1, 4)  # each (B, HEADS, N, D)
        if self.mode == 'sdpa':
            out = F.scaled_dot_product_attention(q, k, v)
        elif self.mode == 'matmul':
            out = (q @ k.transpose(-2, -1) * D**-0.5).softmax(-1) @ v
        elif self.mode == 'einsum':
            attn = torch.einsum('bhqd,bhkd->bhqk', q, k).softmax(-1)
            out = torch.einsum('bhqk,bhkd->bhqd', attn, v)
        else:  # 'bmm' and 'baddbmm' on (B*HEADS, N, D)
            q, k, v = (t.reshape(B * HEADS, N, D) for t in (q, k, v))
            if self.mode == 'bmm':
                attn = torch.bmm(q, k.transpose(1, 2))
            else:
                attn = torch.baddbmm(torch.zeros(B * HEADS, N, N), q, k.transpose(1, 2))
            out = torch.bmm(attn.softmax(-1), v)
        return self.proj(out.reshape(B, HEADS, N, D).transpose(1, 2).reshape(B, N, C))


@pytest.mark.parametrize('mode', ['sdpa', 'matmul', 'einsum', 'bmm', 'baddbmm'])
def test_attention_products_are_counted(mode):
    macs, uncounted = count_macs(ToyAttention(mode).eval(), (torch.randn(B, N, C), ))
    assert macs == analytic_attention_macs()
    assert 'aten::scaled_dot_product_attention' not in uncounted and 'aten::baddbmm' not in uncounted


@pytest.mark.parametrize('need_weights,masked', [(True, False), (True, True), (False, False)])
def test_multihead_attention_is_counted(need_weights, masked):
    # bmm, baddbmm (with a mask) or scaled_dot_product_attention inside nn.MultiheadAttention; counting under
    # no_grad must not switch it to its fused fast path.
    mha = nn.MultiheadAttention(C, HEADS, batch_first=True).eval()
    mask = torch.zeros(N, N) if masked else None

    class Wrapper(nn.Module):

        def __init__(self):
            super().__init__()
            self.mha = mha

        def forward(self, x):
            return self.mha(x, x, x, need_weights=need_weights, attn_mask=mask)[0]

    with torch.no_grad():
        macs, _ = count_macs(Wrapper(), (torch.randn(B, N, C), ))
    assert macs == analytic_attention_macs()


def test_matmul_broadcasts_both_operands():
    # (N, C) @ (B, HEADS, C, N): the batch comes from the second operand only.
    class Product(nn.Module):

        def forward(self, a, b):
            return a @ b

    macs, _ = count_macs(Product(), (torch.randn(N, C), torch.randn(B, HEADS, C, N)))
    assert macs == B * HEADS * N * C * N


# ----------------------------------------------------------------------------------------------------------------
# Detectors, segmentors and the CLI


def test_detector_counts():
    whole = count_model(str(DET_DEMO), shape=(128, 128))
    backbone = count_model(str(DET_DEMO), shape=(128, 128), backbone_only=True)
    assert whole.params > 0 and whole.macs > 0
    assert whole.input_shape == (128, 128) and whole.proposals is not None and whole.proposals > 0
    assert 0 < backbone.macs < whole.macs and 0 < backbone.params < whole.params
    # the same count twice: seeded weights and input give the same proposals
    assert count_model(str(DET_DEMO), shape=(128, 128)).macs == whole.macs



def test_query_segmentation_head_is_counted():
    """mmseg's tensor mode cannot run a Mask2Former head (it needs the data samples); the count runs the backbone and
    the head with them, and the head's MACs are part of the whole."""
    config = str(ROOT / 'configs/transnext/mask2former_transnext-micro_ade20k-demo.py')
    whole = count_model(config, shape=(64, 96))
    backbone = count_model(config, shape=(64, 96), backbone_only=True)
    assert whole.input_shape == (64, 96) and whole.proposals is None
    assert 0 < backbone.macs < whole.macs and 0 < backbone.params < whole.params

def test_cascade_mask_heads_are_counted_on_100_rois():
    """The papers' convention (mmdet 2.x forward_dummy): every stage's box head on all proposals, every stage's
    mask head on the first 100 RoIs. Checked against an independent count: the model without its mask branch plus
    each mask head counted alone on 100 RoI features."""
    from mmlightvit.apis.model import build_model, config_without_pretrained
    from mmlightvit.analysis.complexity import MASK_ROIS
    config = config_without_pretrained(str(ROOT / 'configs/fastervit/cascade-mask-rcnn_fastervit-2_coco-3x.py'))
    # the smallest FasterViT under this config's heads: the convention concerns the heads only; 200 proposals
    # instead of 1000 (still more than MASK_ROIS) keep the three box heads, counted twice here, cheap
    config.model.backbone.arch = '0'
    config.model.neck.in_channels = [64, 128, 256, 512]
    config.model.test_cfg.rpn.max_per_img = 200
    whole = count_model(config, shape=(128, 160))
    cfg = copy.deepcopy(config)
    cfg.model.roi_head.mask_head = None
    cfg.model.roi_head.mask_roi_extractor = None
    without_masks = count_model(cfg, shape=(128, 160))
    model = build_model(cfg, config.model).eval()
    heads = model.roi_head.mask_head
    size = model.roi_head.mask_roi_extractor[0].roi_layers[0].output_size
    # MACs grow linearly with the RoIs: one RoI counted, times 100
    mask_macs = sum(count_macs(head, (torch.randn(1, head.in_channels, *size), ))[0] for head in heads) * MASK_ROIS
    assert len(heads) == 3 and whole.proposals == without_masks.proposals > MASK_ROIS
    assert whole.macs == without_masks.macs + mask_macs


def test_cli_prints_one_row_per_config():
    proc = run_python(['tools/analysis/get_flops.py', DET_DEMO, SEG_DEMO, '--shape', '128', '128'])
    assert 'MACs' in proc.stdout
    rows = [line for line in proc.stdout.splitlines() if line.startswith('| ')]
    header, separator, *body = rows
    assert separator.startswith('| ---') and len(body) == 2
    assert body[0].startswith('| mask-rcnn_repvit-m1.1_coco-demo |')
    assert body[1].startswith('| fpn_repvit-m1.1_ade20k-demo |')
    for row in body:
        params_m, macs_g = (float(cell) for cell in row.strip('| ').split(' | ')[3:5])
        assert params_m > 0 and macs_g > 0
