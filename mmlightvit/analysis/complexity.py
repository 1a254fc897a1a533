"""Parameter and MAC counts of backbones, classifiers, detectors and segmentors.

Counting is mmengine's :class:`~mmengine.analysis.FlopAnalyzer` (a port of fvcore's counter): the model is traced
with ``torch.jit`` and each traced op with a handle adds its count. Like fvcore, **one multiply-add counts as one
FLOP**, so every number here is a MAC count; this is the convention of the RepViT paper's "MACs" column (measured
with fvcore) and of the OpenMMLab ``get_flops`` tools. Params are :func:`mmengine.analysis.parameter_count`
(buffers such as BN running statistics excluded).

We call ``FlopAnalyzer`` and ``parameter_count`` ourselves rather than ``get_model_complexity_info`` (which wraps
exactly these two) because the latter builds its own analyzer with the default handles, so the handles below could
not be added, and it traces the model a second time for activation counts we do not report.

What is counted
---------------
* Convolutions, ``linear``/``addmm``, ``mm``/``matmul``/``bmm``/``einsum``: multiply-adds of the product (mmengine's
  handles); eval-mode BatchNorm: 2 per element (scale and shift), LayerNorm/GroupNorm: 5 per element; bilinear
  up-sampling 4 and nearest 1 per output element; adaptive average pooling 1 per input element.
* Element-wise ops (activations, additions, the SE gate multiply, softmax, ``mean``) are not counted, as in fvcore.
  Ops with no handle are returned in :attr:`Complexity.uncounted` so a caller can see what was skipped (mmcv's
  RoIAlign and NMS, for example, appear as ``prim::PythonOp``).

How attention is counted
------------------------
Attention is counted through the products it is made of. For ``B`` batches, ``h`` heads, ``N`` queries, ``M`` keys,
key/query width ``d`` and value width ``d_v`` per head, the two products cost ``B*h*N*M*d`` (``q @ k^T``) plus
``B*h*N*M*d_v`` (``attn @ v``) MACs; the q/k/v and output projections are ``linear`` ops counted as usual; the
scaling, masking and softmax are element-wise and not counted. Whatever op a model uses for the products:

* ``aten::matmul`` (``q @ k.transpose(-2, -1)``): mmengine's handle multiplies the *first* operand's size by the
  output width, which undercounts when only the second operand carries the batch dimensions; we replace it with one
  that broadcasts the batch dimensions of both operands (:func:`matmul_macs`).
* ``aten::bmm`` and ``aten::einsum``: mmengine's handles are right (``einsum`` uses ``numpy.einsum_path``'s
  optimal contraction cost, halved to MACs).
* ``aten::baddbmm`` (``nn.MultiheadAttention`` with an attention mask, ``need_weights=True``): no mmengine handle;
  we add one, the batched product's MACs (the added input is element-wise) (:func:`baddbmm_macs`).
* ``aten::scaled_dot_product_attention`` (timm's fused attention, ``nn.MultiheadAttention`` with
  ``need_weights=False``): no mmengine handle; we add one that counts both products above in full, also for
  ``is_causal=True`` (the masked half is computed by the reference kernel) (:func:`sdpa_macs`).
* ``nn.MultiheadAttention``'s inference fast path (one fused ``aten::_native_multi_head_attention`` op) is taken
  only when autograd is off, so the trace runs with autograd on and that op never appears.

Detectors and segmentors run in OpenMMLab's tensor mode, ``model._forward(inputs, data_samples)``, as mmdet's and
mmseg's ``get_flops`` tools do, on one image of the requested size after the model's data preprocessor (which may
pad it, e.g. to a multiple of 32). For a two-stage detector the RoI heads' cost depends on how many proposals the
RPN keeps (mmdet's ``StandardRoIHead`` runs the box head on all of them and the mask head on the first 100; a
cascade head's mask heads are counted on the first 100 too, the papers' convention, see :class:`_TensorMode`), so
the number of proposals is reported with the count; weights and the input are seeded, so counts are reproducible.
Segmentors are counted without their auxiliary head (training only), in FLOPs and params alike, as mmseg's tool does.
"""
import importlib
import inspect
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.analysis.jit_handles import get_shape
from mmengine.config import Config

from mmlightvit.models.layers import fuse_model

# Default input sizes (H, W): mmdet's 1333x800 test scale pads to 1344x800; papers count at 1280x800.
DET_SHAPE = (800, 1280)
SEG_SHAPE = (512, 512)
CLS_SHAPE = (224, 224)

# ----------------------------------------------------------------------------------------------------------------
# Op handles for the products attention is made of (see the module docstring). Each gets the traced op's inputs
# and outputs (torch._C.Value) and returns a MAC count.


def _prod(values: Sequence[int]) -> int:
    result = 1
    for v in values:
        result *= int(v)
    return result


def matmul_macs(inputs: List[Any], outputs: List[Any]) -> int:
    """``aten::matmul`` / ``aten::mm``: ``batch * M * K * N`` with the operands' batch dimensions broadcast."""
    a, b = get_shape(inputs[0]), get_shape(inputs[1])
    # torch.matmul promotes a 1-D first operand to a row and a 1-D second operand to a column.
    a = [1] + list(a) if len(a) == 1 else list(a)
    b = list(b) + [1] if len(b) == 1 else list(b)
    assert a[-1] == b[-2], (a, b)
    batch = torch.broadcast_shapes(torch.Size(a[:-2]), torch.Size(b[:-2]))
    return _prod(batch) * a[-2] * a[-1] * b[-1]


def baddbmm_macs(inputs: List[Any], outputs: List[Any]) -> int:
    """``aten::baddbmm(input, batch1, batch2, beta, alpha)``: the MACs of ``batch1 @ batch2`` (``b*n*m*p``)."""
    b, n, m = get_shape(inputs[1])
    p = get_shape(inputs[2])[-1]
    return b * n * m * p


def sdpa_macs(inputs: List[Any], outputs: List[Any]) -> int:
    """``aten::scaled_dot_product_attention(q, k, v, ...)``: ``q @ k^T`` plus ``attn @ v``.

    With ``q: (..., N, d)``, ``k: (..., M, d)``, ``v: (..., M, d_v)`` and output ``(..., N, d_v)``, that is
    ``prod(...) * N * M * (d + d_v)``; the output's leading dimensions are the broadcast batch and head dimensions
    (with grouped-query attention, those of the query heads).
    """
    q, k, v = (get_shape(x) for x in inputs[:3])
    out = get_shape(outputs[0])
    queries_times_batch = _prod(out[:-1])  # prod(...) * N
    return queries_times_batch * k[-2] * (q[-1] + v[-1])


ATTENTION_OP_HANDLES = {
    'aten::matmul': matmul_macs,
    'aten::mm': matmul_macs,
    'aten::baddbmm': baddbmm_macs,
    'aten::scaled_dot_product_attention': sdpa_macs,
}

# ----------------------------------------------------------------------------------------------------------------
# Counting


@dataclass
class Complexity:
    """Result of one count. ``macs`` follows the fvcore convention (one multiply-add = one FLOP)."""
    params: int
    macs: int
    input_shape: Tuple[int, int]  # (H, W) the model actually saw, after any padding
    proposals: Optional[int] = None  # RPN proposals fed to the RoI heads (two-stage detectors)
    uncounted: Counter = field(default_factory=Counter)  # traced ops without a handle -> occurrences


def flop_analyzer(model: nn.Module, inputs: Union[torch.Tensor, Tuple[Any, ...]]) -> FlopAnalyzer:
    """mmengine's ``FlopAnalyzer`` with the attention handles added and its log warnings off (we report the
    uncounted ops ourselves)."""
    analyzer = FlopAnalyzer(model, inputs)
    analyzer.set_op_handle(**ATTENTION_OP_HANDLES)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    analyzer.tracer_warnings('none')  # tracing detectors emits many harmless warnings
    return analyzer


def count_macs(module: nn.Module, inputs: Union[torch.Tensor, Tuple[Any, ...]]) -> Tuple[int, Counter]:
    """``(MACs, uncounted ops)`` of ``module(*inputs)``."""
    # Autograd off: the trace then keeps no activations for a backward pass (a TransNeXt UperNet at 512x2048, a
    # 5-scale DINO at 800x1280 need several times less memory). Without autograd nn.MultiheadAttention would take
    # its fused fast path, which has no handle: that path is switched off for the count.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad():
            analyzer = flop_analyzer(module, inputs)
            macs = int(analyzer.total())
            uncounted = Counter(analyzer.unsupported_ops())
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return macs, uncounted


def _params(model: nn.Module) -> int:
    return int(parameter_count(model)[''])


def _prepare(model: nn.Module, fused: bool) -> nn.Module:
    # Counting is of the inference model: eval mode (BN uses running statistics, so it can be folded).
    model.eval()
    return fuse_model(model) if fused else model


def _image(shape: Tuple[int, int], batch: Optional[int] = None) -> torch.Tensor:
    """A seeded random image with values in [0, 255) (so data preprocessors normalise as for real images)."""
    generator = torch.Generator().manual_seed(0)
    size = (3, *shape) if batch is None else (batch, 3, *shape)
    return torch.rand(size, generator=generator) * 255


def count_backbone(model: nn.Module, shape: Tuple[int, int] = CLS_SHAPE, fused: bool = False) -> Complexity:
    """Params and MACs of ``model`` (a backbone, or a backbone plus head) on one ``3 x H x W`` image. Counted in
    eval mode; the model's mode is restored afterwards (with ``fused=True`` the model is fused in place)."""
    training = model.training
    model = _prepare(model, fused)
    inputs = _image(shape, batch=1) / 255  # scale does not matter for backbones: no data-dependent control flow
    try:
        macs, uncounted = count_macs(model, (inputs, ))
    finally:
        model.train(training)
    return Complexity(_params(model), macs, tuple(shape), uncounted=uncounted)


class BNLinear(nn.Module):
    """BatchNorm1d then Linear: the single-head classifier of RepViT / timm's ``RepVit`` (after global pooling).

    ``fuse()`` folds the BN into the Linear (done by :func:`fuse_model` with the rest of the model), as the paper
    counts the deploy model.
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.norm = nn.BatchNorm1d(in_features)
        self.fc = nn.Linear(in_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(x))

    @torch.no_grad()
    def fuse(self) -> nn.Linear:
        # fc(s * (x - mean) + beta) with s = gamma / sqrt(var + eps): W' = W * s, b' = b + W @ (beta - s * mean).
        f64 = torch.float64
        bn, fc = self.norm, self.fc
        scale = bn.weight.to(f64) / torch.sqrt(bn.running_var.to(f64) + bn.eps)
        shift = bn.bias.to(f64) - scale * bn.running_mean.to(f64)
        weight = fc.weight.to(f64)
        fused = nn.Linear(fc.in_features, fc.out_features, dtype=fc.weight.dtype)
        fused.weight.copy_(weight * scale)
        fused.bias.copy_(fc.bias.to(f64) + weight @ shift)
        return fused


class ImageClassifier(nn.Module):
    """A backbone's last stage output, global average pooling, :class:`BNLinear` to ``num_classes``."""

    def __init__(self, backbone: nn.Module, num_classes: int = 1000):
        super().__init__()
        self.backbone = backbone
        self.head = BNLinear(backbone.out_channels[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x.mean like timm; fvcore does not count it (adaptive_avg_pool2d would add C*H*W MACs).
        return self.head(self.backbone(x)[-1].mean((2, 3)))


def build_arch(family_arch: str, with_classifier: bool = False, num_classes: int = 1000) -> nn.Module:
    """``'RepViT:m1.1'`` -> that mmlightvit backbone (last stage only), with a classifier if asked."""
    from mmlightvit.registry import MODELS
    family, sep, arch = family_arch.partition(':')
    if not sep or not family or not arch:
        raise ValueError(f'Expected FAMILY:ARCH (e.g. RepViT:m1.1), got {family_arch!r}.')
    backbone = MODELS.build(dict(type=f'mmlightvit.{family}', arch=arch, out_indices=(3, )))
    return ImageClassifier(backbone, num_classes) if with_classifier else backbone


def count_arch(family_arch: str,
               shape: Tuple[int, int] = CLS_SHAPE,
               with_classifier: bool = False,
               fused: bool = False) -> Complexity:
    """Params and MACs of an mmlightvit backbone given as ``'FAMILY:ARCH'`` (optionally with a 1000-class head)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_arch(family_arch, with_classifier)
    return count_backbone(model, shape, fused)


# ----------------------------------------------------------------------------------------------------------------
# Detectors and segmentors from configs

# default_scope -> (data sample class, default input shape)
_TASKS = {
    'mmdet': ('mmdet.structures.DetDataSample', DET_SHAPE),
    'mmseg': ('mmseg.structures.SegDataSample', SEG_SHAPE),
    'mmpretrain': ('mmpretrain.structures.DataSample', CLS_SHAPE),
}


def config_scope(cfg: Config) -> str:
    scope = cfg.get('default_scope')
    if scope not in _TASKS:
        raise ValueError(f'only mmdet, mmseg and mmpretrain configs are supported (default_scope={scope!r})')
    return scope


def default_shape(cfg: Config, backbone_only: bool = False) -> Tuple[int, int]:
    return CLS_SHAPE if backbone_only else _TASKS[config_scope(cfg)][1]


def _data_sample_class(scope: str) -> type:
    module, name = _TASKS[scope][0].rsplit('.', 1)
    return getattr(importlib.import_module(module), name)


def predict_batch(model: nn.Module, scope: str, shape: Tuple[int, int], batch: int = 1) -> Tuple[torch.Tensor, list]:
    """``batch`` seeded images of ``shape`` through the model's own data preprocessor (normalisation, padding,
    ``batch_input_shape``): the ``(inputs, data_samples)`` that tensor and predict mode take."""
    height, width = shape
    meta = dict(img_shape=(height, width), ori_shape=(height, width), pad_shape=(height, width),
                scale_factor=(1., 1.))
    sample_class = _data_sample_class(scope)
    data = dict(inputs=[_image(shape)] * batch, data_samples=[sample_class(metainfo=meta) for _ in range(batch)])
    with torch.no_grad():
        data = model.data_preprocessor(data, training=False)
    return data['inputs'], data['data_samples']


#: RoIs the mask heads of a two-stage detector are counted on: mmdet 2.x's ``forward_dummy`` (the convention of the
#: papers' FLOPs columns) and mmdet 3.x's ``StandardRoIHead.forward`` run them on the first 100 proposals.
MASK_ROIS = 100


class _TensorMode(nn.Module):
    """Calls ``model._forward(inputs, data_samples)`` (OpenMMLab's tensor mode) with fixed data samples, so the
    analyzer can trace it as a one-input module; records how many proposals an RPN passes on.

    mmdet 3.x's ``CascadeRoIHead.forward`` runs every stage's mask head on all proposals (1000), where mmdet 2.x's
    ``forward_dummy``, whose counts the papers' Cascade Mask R-CNN tables give, runs them on the first
    :data:`MASK_ROIS`. So for a cascade head the mask branch computes on those RoIs only; the rest of its output
    is zero-filled (not counted), which keeps the shapes the head expects.
    """

    def __init__(self, model: nn.Module, data_samples: list):
        super().__init__()
        self.model = model
        self.data_samples = data_samples
        self.proposals: Optional[int] = None

    def forward(self, inputs: torch.Tensor):
        rpn_head = getattr(self.model, 'rpn_head', None)
        roi_head = getattr(self.model, 'roi_head', None)
        shadowed = []  # (module, name): instance attributes that shadow a method for this call only
        if rpn_head is not None:
            predict = rpn_head.predict

            def counting_predict(*args, **kwargs):
                results = predict(*args, **kwargs)
                self.proposals = sum(len(r) for r in results)
                return results

            rpn_head.predict = counting_predict
            shadowed.append((rpn_head, 'predict'))
        if getattr(roi_head, 'num_stages', None) and getattr(roi_head, 'with_mask', False):
            mask_forward = roi_head._mask_forward

            def first_rois_mask_forward(stage, x, rois):
                results = mask_forward(stage, x, rois[:MASK_ROIS])
                masks = results['mask_preds']
                rest = masks.new_zeros((len(rois) - len(masks), ) + masks.shape[1:])
                return dict(results, mask_preds=torch.cat([masks, rest]))

            roi_head._mask_forward = first_rois_mask_forward
            shadowed.append((roi_head, '_mask_forward'))
        try:
            decode_head = getattr(self.model, 'decode_head', None)
            if decode_head is not None and 'batch_data_samples' in inspect.signature(decode_head.forward).parameters:
                # query-based segmentation heads (Mask2Former, MaskFormer) need the data samples, which mmseg's
                # _forward does not pass
                return decode_head.forward(self.model.extract_feat(inputs), self.data_samples)
            if not hasattr(self.model, '_forward'):  # mmpretrain's classifiers: tensor mode is forward's
                return self.model(inputs, self.data_samples, mode='tensor')
            return self.model._forward(inputs, self.data_samples)
        finally:
            for module, name in shadowed:
                delattr(module, name)


def count_model(config: Union[str, Config],
                shape: Optional[Tuple[int, int]] = None,
                fused: bool = False,
                backbone_only: bool = False) -> Complexity:
    """Params and MACs of the detector / segmentor of an mmdet or mmseg config (or of its backbone alone).

    ``shape`` is (H, W); by default 800x1280 for mmdet, 512x512 for mmseg and 224x224 with ``backbone_only``.
    """
    from mmlightvit.apis.model import build_model, config_without_pretrained
    cfg = config_without_pretrained(config)
    config_scope(cfg)
    shape = tuple(shape) if shape is not None else default_shape(cfg, backbone_only)
    if backbone_only:
        return count_backbone(build_model(cfg, cfg.model.backbone), shape, fused)

    scope = config_scope(cfg)
    model = build_model(cfg)
    if getattr(model, 'auxiliary_head', None) is not None:
        model.auxiliary_head = None  # training-only head of a segmentor: not part of the inference model
    model = _prepare(model, fused)

    inputs, data_samples = predict_batch(model, scope, shape)

    wrapper = _TensorMode(model, data_samples)
    macs, uncounted = count_macs(wrapper, (inputs, ))
    return Complexity(_params(model), macs, tuple(inputs.shape[-2:]), wrapper.proposals, uncounted)
