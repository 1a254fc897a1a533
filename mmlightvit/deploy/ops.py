"""Operators that a whole-model export needs beyond what torch.export traces: non-maximum suppression.

``multiclass_nms`` has the semantics of ONNX ``NonMaxSuppression`` (opset 10+), so that the exported graph holds that
standard op and every runtime that reads ONNX runs it: boxes ``(G, K, 4)`` as corners, scores ``(G, C, K)``; for each
group ``g`` and class ``c`` independently, the boxes scoring above ``score_threshold`` are suppressed greedily in
descending score order when their IoU with a kept box exceeds ``iou_threshold``. The result lists the kept boxes as
rows ``(g, c, k)``, group by group, class by class, best first. In PyTorch it runs ``torchvision.ops.nms`` per
group and class: the same IoU test (``>``, no +1 offset) as mmcv's ``nms``, which mmdet's ``batched_nms`` calls.

mmdet separates classes (or RPN levels) by shifting each class's boxes by ``class * (max coordinate + 1)`` and
running one NMS; a per-class NMS keeps the same boxes without the float error of the shifted coordinates.
"""
import torch
import torchvision

#: Scores of "no candidate here" (dropped by a threshold, padding). Every real score is a probability, >= 0.
NOT_A_CANDIDATE = -1.0
#: The op's score threshold that keeps every real score and drops NOT_A_CANDIDATE.
CANDIDATE_FLOOR = -0.5


@torch.library.custom_op('mmlightvit::multiclass_nms', mutates_args=())
def multiclass_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float,
                   score_threshold: float) -> torch.Tensor:
    """Rows ``(group, class, box)`` of the boxes kept by per-class NMS; see the module docstring."""
    rows = [boxes.new_zeros((0, 3), dtype=torch.long)]
    for group in range(scores.shape[0]):
        for cls in range(scores.shape[1]):
            candidates = torch.nonzero(scores[group, cls] > score_threshold).squeeze(1)
            kept = candidates[torchvision.ops.nms(boxes[group, candidates].float(),
                                                  scores[group, cls, candidates].float(), iou_threshold)]
            rows.append(torch.stack([torch.full_like(kept, group), torch.full_like(kept, cls), kept], 1))
    return torch.cat(rows)


@multiclass_nms.register_fake
def _multiclass_nms_shape(boxes, scores, iou_threshold, score_threshold):
    # How many boxes survive depends on the data: a size the exported graph computes at run time.
    kept = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((kept, 3), dtype=torch.long)


def onnx_translations() -> dict:
    """The ``custom_translation_table`` entries for ``torch.onnx.export(..., dynamo=True)``."""
    from onnxscript import FLOAT, INT64
    from onnxscript import opset18 as op

    def nms_to_onnx(boxes: FLOAT, scores: FLOAT, iou_threshold: float, score_threshold: float) -> INT64:
        # No limit per class: mmdet limits the count after NMS, over all classes (max_per_img).
        return op.NonMaxSuppression(boxes, scores, op.Constant(value_ints=[2**62]),
                                    op.Constant(value_floats=[iou_threshold]),
                                    op.Constant(value_floats=[score_threshold]))

    return {torch.ops.mmlightvit.multiclass_nms.default: nms_to_onnx}


def with_static_corners(boxes: torch.Tensor) -> torch.Tensor:
    """``boxes (..., 4)`` rebuilt from their four coordinates, so that the graph states the last dimension as 4.

    NonMaxSuppression needs it: OpenVINO's CPU plugin checks it when it compiles the file. Boxes that come out of a
    Reshape whose target shape is computed from the input's size (``(N * C, K, 4)`` for per-class NMS) depend on
    the runtime's shape inference keeping that 4; OpenVINO's does not once its low-precision transformations run
    (any INT8 file): they leave every such Reshape with no static dimension. A stack of four selected coordinates
    is 4 wide by construction, whatever the runtime infers about the rest."""
    return torch.stack([boxes[..., i] for i in range(4)], dim=-1)


def nms_keep_mask(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Which of the candidates ``boxes (G, K, 4)`` with ``scores (G, C, K)`` (NOT_A_CANDIDATE where a box is no
    candidate of a class) survive per-class NMS: a bool mask ``(G, C, K)``."""
    kept = multiclass_nms(with_static_corners(boxes), scores, iou_threshold, CANDIDATE_FLOOR)
    groups, classes, count = scores.shape
    flat_index = (kept[:, 0] * classes + kept[:, 1]) * count + kept[:, 2]
    mask = torch.zeros(groups * classes * count, dtype=torch.bool, device=scores.device)
    mask = mask.index_put((flat_index, ), torch.ones_like(flat_index, dtype=torch.bool))
    return mask.view(groups, classes, count)
