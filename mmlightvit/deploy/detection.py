"""mmdet detectors as ``(image, image_size) -> final detections``: mmdet's test-time post-processing in tensor form.

mmdet's ``predict`` post-processes each image in Python: it filters by score with boolean indexing, decodes, and
runs NMS whose output length depends on the data. None of that traces into a graph. The modules here compute the
same detections with fixed-size tensors over the whole batch:

* a candidate that mmdet would drop (score under the threshold, an empty box, a padded proposal) keeps its place
  with the score ``NOT_A_CANDIDATE``;
* NMS is :func:`~mmlightvit.deploy.ops.nms_keep_mask` (ONNX ``NonMaxSuppression`` in the graph), per class, or per
  level for the RPN, as mmdet's ``batched_nms`` groups them;
* the best ``max_per_img`` survivors are taken with ``topk``; when fewer survive, the remaining rows are padding:
  label ``-1`` and an all-zero box and score.

Inputs: ``image (N, 3, H, W)``, the batch as the config's data preprocessor makes it (normalised, padded), and
``image_size (N, 2)``, each image's ``(height, width)`` before padding (mmdet's ``img_shape``), which boxes are
clipped to. Outputs: ``dets (N, M, 5)`` (x1, y1, x2, y2, score) in the coordinates of ``image``, ``labels (N, M)``,
and for instance segmentation ``masks (N, M, S, S)``: each detection's mask probabilities over its box at the mask
head's resolution. Scaling the boxes to the original image and pasting the masks are the caller's (see
:mod:`mmlightvit.deploy.runtime`), as mmdet's ``rescale`` step.

DINO has neither threshold nor NMS: its ``max_per_img`` best (query, class) scores are the detections, as in
mmdet; its transformer is mmdet's, run with the level sizes as integers (:mod:`mmlightvit.deploy.deformable`) and
the padding masks built from ``image_size`` in the graph.

Where this differs from mmdet: one-stage heads rescale boxes to the original image before NMS in mmdet and here
after it, which changes which boxes overlap by more than the IoU threshold only when the resize scaled width and
height differently (keep-ratio rounding: a relative difference of about 1e-3).
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import roi_align

from mmlightvit.deploy.deformable import LevelSizes, encoder_reference_points, level_sizes
from mmlightvit.deploy.ops import NOT_A_CANDIDATE, nms_keep_mask


class DetectionExportError(ValueError):
    """A detector, head or test setting this module does not compute in tensor form, with the reason."""


# ----------------------------------------------------------------------------------------------------------------
# Boxes


def clip_to_images(boxes: torch.Tensor, image_size: torch.Tensor) -> torch.Tensor:
    """Clamp ``boxes (N, K, 4)`` to each image's ``(height, width)``, as mmdet's coders do with ``max_shape``."""
    height = image_size[:, 0].to(boxes.dtype).view(-1, 1, 1)
    width = image_size[:, 1].to(boxes.dtype).view(-1, 1, 1)
    x = torch.minimum(boxes[..., 0::2].clamp(min=0), width)
    y = torch.minimum(boxes[..., 1::2].clamp(min=0), height)
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], dim=-1)


def decode_boxes(coder, priors: torch.Tensor, deltas: torch.Tensor, image_size: torch.Tensor) -> torch.Tensor:
    """``coder.decode(priors, deltas, max_shape=img_shape)`` for every image: ``priors (N, K, P)`` and
    ``deltas (N, K, 4)`` give boxes ``(N, K, 4)``. The arithmetic is mmdet's own function."""
    from mmdet.models.task_modules.coders import DeltaXYWHBBoxCoder, DistancePointBBoxCoder
    from mmdet.models.task_modules.coders.delta_xywh_bbox_coder import delta2bbox
    from mmdet.structures.bbox import distance2bbox
    batch, count = deltas.shape[:2]
    if isinstance(coder, DeltaXYWHBBoxCoder):
        boxes = delta2bbox(priors.reshape(-1, 4), deltas.reshape(-1, 4), coder.means, coder.stds, None, 16 / 1000,
                           False, coder.add_ctr_clamp, coder.ctr_clamp)
    elif isinstance(coder, DistancePointBBoxCoder):
        boxes = distance2bbox(priors.reshape(-1, priors.shape[-1]), deltas.reshape(-1, 4))
    else:
        raise DetectionExportError(f'Box coder {type(coder).__name__} is not supported; supported: '
                                   'DeltaXYWHBBoxCoder, DistancePointBBoxCoder.')
    boxes = boxes.view(batch, count, 4)
    return clip_to_images(boxes, image_size) if coder.clip_border else boxes


def drop_empty_boxes(boxes: torch.Tensor, scores: torch.Tensor, cfg) -> torch.Tensor:
    """mmdet's ``min_bbox_size`` filter: boxes not wider and taller than it stop being candidates."""
    min_size = cfg.get('min_bbox_size', -1)
    if min_size < 0:
        return scores
    wide = (boxes[..., 2] - boxes[..., 0] > min_size) & (boxes[..., 3] - boxes[..., 1] > min_size)
    return torch.where(wide, scores, NOT_A_CANDIDATE)


def gather_rows(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``values[n, index[n, k]]`` for ``values (N, K, ...)`` and ``index (N, J)``."""
    expanded = index.view(*index.shape, *[1] * (values.dim() - 2)).expand(*index.shape, *values.shape[2:])
    return values.gather(1, expanded)


def top_count(limit: int, available) -> int:
    """``min(limit, available)`` where ``limit <= 0`` means no limit; stays symbolic during export."""
    return available if limit <= 0 else torch.sym_min(limit, available)


# ----------------------------------------------------------------------------------------------------------------
# NMS and the final selection


def nms_iou(cfg) -> Tuple[float, bool]:
    """The IoU threshold and ``class_agnostic`` flag of a test config's ``nms``; other NMS kinds are refused."""
    nms = dict(cfg.get('nms') or {})
    kind = nms.pop('type', 'nms')
    if kind != 'nms' or nms.get('offset', 0) != 0:
        raise DetectionExportError(f'Test-time NMS {cfg.nms} is not supported; supported: type="nms" (offset 0).')
    return float(nms['iou_threshold']), bool(nms.get('class_agnostic', False))


def keep_after_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, num_groups: int,
                   iou_threshold: float) -> torch.Tensor:
    """Per-group NMS over candidates ``boxes (N, K, 4)``, ``scores (N, K)`` in ``groups (N, K)`` (class or level
    ids, as mmdet's ``batched_nms`` idxs): a bool mask ``(N, K)`` of the survivors."""
    dense = torch.full((scores.shape[0], num_groups, scores.shape[1]), NOT_A_CANDIDATE, dtype=scores.dtype,
                       device=scores.device)
    dense = dense.scatter(1, groups.unsqueeze(1), scores.unsqueeze(1))
    return nms_keep_mask(boxes, dense, iou_threshold).any(dim=1)


def keep_after_nms_per_class_boxes(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Per-class NMS where each class has its own box: ``boxes (N, K, C, 4)``, ``scores (N, K, C)`` ->
    survivors ``(N, K, C)``. Each (image, class) is one NMS group."""
    batch, count, classes = scores.shape
    grouped_boxes = boxes.permute(0, 2, 1, 3).reshape(batch * classes, count, 4)
    grouped_scores = scores.permute(0, 2, 1).reshape(batch * classes, 1, count)
    keep = nms_keep_mask(grouped_boxes, grouped_scores, iou_threshold)
    return keep.view(batch, classes, count).permute(0, 2, 1)


def best_detections(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor,
                    max_per_img: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The ``max_per_img`` best survivors as ``dets (N, M, 5)`` and ``labels (N, M)``, best first; rows without a
    survivor are padding (zeros, label -1)."""
    ranked = torch.where(keep, scores, NOT_A_CANDIDATE)
    top, index = ranked.topk(top_count(max_per_img, ranked.shape[1]), dim=1)
    found = top >= 0
    dets = torch.cat([gather_rows(boxes, index), top.unsqueeze(-1)], dim=-1) * found.unsqueeze(-1)
    return dets, torch.where(found, labels.gather(1, index), -1)


def class_scores(logits: torch.Tensor, use_sigmoid: bool) -> torch.Tensor:
    """Class probabilities from a head's logits ``(..., C or C + 1)``, as mmdet's heads activate them."""
    return logits.sigmoid() if use_sigmoid else logits.softmax(-1)[..., :-1]


def require_plain_classifier(head) -> None:
    if getattr(head, 'custom_cls_channels', False) or getattr(head, 'custom_activation', False) or \
            getattr(getattr(head, 'loss_cls', None), 'custom_cls_channels', False):
        raise DetectionExportError(f'{type(head).__name__} uses a custom class activation, which is not supported.')


# ----------------------------------------------------------------------------------------------------------------
# One-stage heads


def dense_head_candidates(head, feats: Sequence[torch.Tensor], image_size: torch.Tensor,
                          cfg) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``BaseDenseHead.predict_by_feat`` up to its NMS, in tensor form, for heads without score factors (RTMDet, SSD,
    RetinaNet): the candidates' ``boxes (N, K, 4)``, ``scores (N, K)`` (NOT_A_CANDIDATE where mmdet drops one) and
    ``labels (N, K)``."""
    outputs = head(feats)
    if len(outputs) != 2:
        raise DetectionExportError(f'{type(head).__name__} returns {len(outputs)} groups of maps (score factors or '
                                   'masks); supported: dense heads returning class scores and box predictions.')
    require_plain_classifier(head)
    cls_scores, bbox_preds = outputs
    priors = head.prior_generator.grid_priors([c.shape[-2:] for c in cls_scores], dtype=cls_scores[0].dtype,
                                              device=cls_scores[0].device)
    score_thr, nms_pre = cfg.get('score_thr', 0), cfg.get('nms_pre', -1)
    all_scores, all_labels, all_deltas, all_priors = [], [], [], []
    for cls_score, bbox_pred, level_priors in zip(cls_scores, bbox_preds, priors):
        batch = cls_score.shape[0]
        scores = class_scores(cls_score.permute(0, 2, 3, 1).reshape(batch, -1, head.cls_out_channels),
                              head.use_sigmoid_cls)
        num_classes = scores.shape[-1]
        deltas = bbox_pred.permute(0, 2, 3, 1).reshape(batch, -1, head.bbox_coder.encode_size)
        # filter_scores_and_topk: the best nms_pre (prior, class) pairs above score_thr
        flat = scores.reshape(batch, -1)
        flat = torch.where(flat > score_thr, flat, NOT_A_CANDIDATE)
        top, index = flat.topk(top_count(nms_pre, flat.shape[1]), dim=1)
        prior_index = torch.div(index, num_classes, rounding_mode='floor')
        all_scores.append(top)
        all_labels.append(index % num_classes)
        all_deltas.append(gather_rows(deltas, prior_index))
        all_priors.append(level_priors[prior_index])
    scores, labels = torch.cat(all_scores, 1), torch.cat(all_labels, 1)
    boxes = decode_boxes(head.bbox_coder, torch.cat(all_priors, 1), torch.cat(all_deltas, 1), image_size)
    return boxes, drop_empty_boxes(boxes, scores, cfg), labels


def dense_nms_settings(head, cfg) -> dict:
    """What the NMS after a dense head needs (:func:`detections_after_nms`), from the head and its test config."""
    iou_threshold, class_agnostic = nms_iou(cfg)
    return dict(iou_threshold=iou_threshold, class_agnostic=class_agnostic, num_classes=head.num_classes,
                max_per_img=cfg.get('max_per_img', -1))


def detections_after_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou_threshold: float,
                         class_agnostic: bool, num_classes: int, max_per_img: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The detections of candidates (:func:`dense_head_candidates`): NMS per class (or over all, class-agnostic),
    then the ``max_per_img`` best survivors (:func:`best_detections`)."""
    groups = torch.zeros_like(labels) if class_agnostic else labels
    keep = keep_after_nms(boxes, scores, groups, 1 if class_agnostic else num_classes, iou_threshold)
    return best_detections(boxes, scores, labels, keep, max_per_img)


def dense_head_detections(head, feats: Sequence[torch.Tensor], image_size: torch.Tensor,
                          cfg) -> Tuple[torch.Tensor, torch.Tensor]:
    """``BaseDenseHead.predict_by_feat`` in tensor form, for heads without score factors (RTMDet, SSD, RetinaNet)."""
    return detections_after_nms(*dense_head_candidates(head, feats, image_size, cfg), **dense_nms_settings(head, cfg))


def ranked_candidates(boxes: torch.Tensor, scores: torch.Tensor,
                      labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Candidates as a program without NMS gives them: ``candidates (N, K, 5)`` (box and score) and
    ``candidate_labels (N, K)``, best first, dropped ones as padding (zeros, label -1)."""
    return best_detections(boxes, scores, labels, scores >= 0, -1)


def detections_from_ranked_candidates(candidates: torch.Tensor, candidate_labels: torch.Tensor,
                                      nms: dict) -> Tuple[torch.Tensor, torch.Tensor]:
    """What the graph with NMS gives (``dets``, ``labels``), from :func:`ranked_candidates`' outputs and the
    settings of :func:`dense_nms_settings`: the same NMS and selection, run after the program."""
    found = candidate_labels >= 0
    scores = torch.where(found, candidates[..., 4], NOT_A_CANDIDATE)
    return detections_after_nms(candidates[..., :4], scores, candidate_labels.clamp(min=0), **nms)


# ----------------------------------------------------------------------------------------------------------------
# Two-stage heads


def rpn_proposals(rpn_head, feats: Sequence[torch.Tensor], image_size: torch.Tensor,
                  cfg) -> Tuple[torch.Tensor, torch.Tensor]:
    """``RPNHead.predict_by_feat`` in tensor form: proposals ``(N, P, 4)`` and whether each is one ``(N, P)``."""
    cls_scores, bbox_preds = rpn_head(feats)
    priors = rpn_head.prior_generator.grid_priors([c.shape[-2:] for c in cls_scores], dtype=cls_scores[0].dtype,
                                                  device=cls_scores[0].device)
    nms_pre = cfg.get('nms_pre', -1)
    all_scores, all_deltas, all_priors, all_levels = [], [], [], []
    for level, (cls_score, bbox_pred, level_priors) in enumerate(zip(cls_scores, bbox_preds, priors)):
        batch = cls_score.shape[0]
        scores = class_scores(cls_score.permute(0, 2, 3, 1).reshape(batch, -1, rpn_head.cls_out_channels),
                              rpn_head.use_sigmoid_cls).reshape(batch, -1)
        deltas = bbox_pred.permute(0, 2, 3, 1).reshape(batch, -1, rpn_head.bbox_coder.encode_size)
        top, index = scores.topk(top_count(nms_pre, scores.shape[1]), dim=1)
        all_scores.append(top)
        all_deltas.append(gather_rows(deltas, index))
        all_priors.append(level_priors[index])
        all_levels.append(torch.full_like(index, level))
    scores, levels = torch.cat(all_scores, 1), torch.cat(all_levels, 1)
    boxes = decode_boxes(rpn_head.bbox_coder, torch.cat(all_priors, 1), torch.cat(all_deltas, 1), image_size)
    scores = drop_empty_boxes(boxes, scores, cfg)
    iou_threshold, _ = nms_iou(cfg)
    keep = keep_after_nms(boxes, scores, levels, len(cls_scores), iou_threshold)
    dets, labels = best_detections(boxes, scores, levels, keep, cfg.get('max_per_img', -1))
    return dets[..., :4], labels >= 0


def roi_features(extractor, feats: Sequence[torch.Tensor], rois: torch.Tensor) -> torch.Tensor:
    """``SingleRoIExtractor(feats, rois)`` with torchvision's RoIAlign (ONNX ``RoiAlign``), which computes what
    mmcv's aligned RoIAlign does. Every RoI is pooled from every level and the mapped level's result kept, so no
    shape depends on how the RoIs fall on the levels."""
    feats = feats[:extractor.num_inputs]
    levels = extractor.map_roi_levels(rois, len(feats)) if len(feats) > 1 else None
    pooled = 0
    for level, (feat, layer) in enumerate(zip(feats, extractor.roi_layers)):
        if getattr(layer, 'pool_mode', 'avg') != 'avg':
            raise DetectionExportError(f'RoIAlign pool_mode={layer.pool_mode!r} is not supported; supported: avg.')
        level_pooled = roi_align(feat, rois, layer.output_size, layer.spatial_scale, layer.sampling_ratio,
                                 layer.aligned)
        pooled = level_pooled if levels is None else pooled + level_pooled * (levels == level).view(-1, 1, 1, 1)
    return pooled


def as_rois(boxes: torch.Tensor) -> torch.Tensor:
    """``boxes (N, K, 4)`` as mmdet's RoIs ``(N * K, 5)``: image index, then the box."""
    batch, count = boxes.shape[:2]
    index = torch.arange(batch, device=boxes.device, dtype=boxes.dtype).view(-1, 1, 1).expand(batch, count, 1)
    return torch.cat([index, boxes], dim=-1).reshape(-1, 5)


class TwoStageHeads:
    """The per-stage modules of a ``StandardRoIHead`` or ``CascadeRoIHead`` (one stage for the standard head)."""

    def __init__(self, roi_head):
        from mmdet.models.roi_heads import CascadeRoIHead, StandardRoIHead
        if not isinstance(roi_head, (StandardRoIHead, CascadeRoIHead)) or type(roi_head).predict is not \
                (CascadeRoIHead if isinstance(roi_head, CascadeRoIHead) else StandardRoIHead).predict:
            raise DetectionExportError(f'RoI head {type(roi_head).__name__} is not supported; supported: '
                                       'StandardRoIHead (Mask R-CNN, Faster R-CNN), CascadeRoIHead.')
        if roi_head.with_shared_head:
            raise DetectionExportError('RoI heads with a shared head are not supported.')
        cascade = isinstance(roi_head, CascadeRoIHead)
        as_list = (lambda m: list(m)) if cascade else (lambda m: [m])
        self.bbox_extractors = as_list(roi_head.bbox_roi_extractor)
        self.bbox_heads = as_list(roi_head.bbox_head)
        self.with_mask = roi_head.with_mask
        if self.with_mask:
            shared = roi_head.share_roi_extractor
            self.mask_extractors = self.bbox_extractors if shared else as_list(roi_head.mask_roi_extractor)
            self.mask_heads = as_list(roi_head.mask_head)
        for head in self.bbox_heads:
            require_plain_classifier(head)


def cascade_boxes(heads: TwoStageHeads, feats, proposals: torch.Tensor, image_size: torch.Tensor):
    """The RoI stages' boxes: ``(rois, mean class logits, last stage's box deltas)`` as CascadeRoIHead's
    ``_refine_roi`` computes them (a standard RoI head is a cascade of one stage)."""
    batch, count = proposals.shape[:2]
    rois, stage_logits = proposals, []
    for stage, (extractor, head) in enumerate(zip(heads.bbox_extractors, heads.bbox_heads)):
        logits, deltas = head(roi_features(extractor, feats, as_rois(rois)))
        stage_logits.append(logits)
        if stage < len(heads.bbox_heads) - 1:  # regress_by_class with the best non-background class
            if not head.reg_class_agnostic:
                label = logits[:, :-1].argmax(dim=1)
                columns = (label * 4).unsqueeze(1) + torch.arange(4, device=label.device)
                deltas = deltas.gather(1, columns)
            rois = decode_boxes(head.bbox_coder, rois, deltas.view(batch, count, 4), image_size)
    return rois, sum(stage_logits) / float(len(stage_logits)), deltas


def roi_detections(heads: TwoStageHeads, feats, proposals: torch.Tensor, is_proposal: torch.Tensor,
                   image_size: torch.Tensor, cfg) -> Tuple[torch.Tensor, torch.Tensor]:
    """``BBoxHead.predict_by_feat`` (softmax, decode, ``multiclass_nms``) of the last stage, in tensor form."""
    head = heads.bbox_heads[-1]
    rois, logits, deltas = cascade_boxes(heads, feats, proposals, image_size)
    batch, count = proposals.shape[:2]
    num_classes = head.num_classes
    scores = class_scores(logits, use_sigmoid=False).view(batch, count, num_classes)
    scores = torch.where(is_proposal.unsqueeze(-1) & (scores > cfg.score_thr), scores, NOT_A_CANDIDATE)
    iou_threshold, class_agnostic = nms_iou(cfg)
    labels = torch.arange(num_classes, device=scores.device).expand(batch, count, num_classes)
    if head.reg_class_agnostic:
        boxes = decode_boxes(head.bbox_coder, rois, deltas.view(batch, count, 4), image_size)
        boxes = boxes.unsqueeze(2).expand(batch, count, num_classes, 4)
    else:
        per_class_rois = rois.unsqueeze(2).expand(batch, count, num_classes, 4).reshape(batch, -1, 4)
        boxes = decode_boxes(head.bbox_coder, per_class_rois, deltas.reshape(batch, -1, 4), image_size)
        boxes = boxes.view(batch, count, num_classes, 4)
    if class_agnostic:
        flat_boxes = boxes.reshape(batch, -1, 4)
        keep = keep_after_nms(flat_boxes, scores.reshape(batch, -1), torch.zeros_like(labels.reshape(batch, -1)), 1,
                              iou_threshold)
    else:
        keep = keep_after_nms_per_class_boxes(boxes, scores, iou_threshold).reshape(batch, -1)
    return best_detections(boxes.reshape(batch, -1, 4), scores.reshape(batch, -1), labels.reshape(batch, -1), keep,
                           cfg.max_per_img)


def roi_masks(heads: TwoStageHeads, feats, dets: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each detection's mask probabilities ``(N, M, S, S)`` for its label: the sigmoid of the mask head, averaged
    over the stages of a cascade (``merge_aug_masks``)."""
    rois = as_rois(dets[..., :4])
    label = labels.reshape(-1).clamp(min=0)
    stage_masks = []
    for extractor, head in zip(heads.mask_extractors, heads.mask_heads):
        logits = head(roi_features(extractor, feats, rois))
        channel = torch.zeros_like(label) if head.class_agnostic else label
        stage_masks.append(logits[torch.arange(logits.shape[0], device=logits.device), channel].sigmoid())
    masks = sum(stage_masks) / float(len(stage_masks))
    return masks.view(*labels.shape, *masks.shape[-2:]) * (labels >= 0).view(*labels.shape, 1, 1)


# ----------------------------------------------------------------------------------------------------------------
# DETR-like detectors (DINO)


def padding_masks(image: torch.Tensor, image_size: torch.Tensor) -> torch.Tensor:
    """``(N, H, W)`` of ``image``, 1.0 where the batch pads an image (outside its ``image_size``), else 0.0: the
    masks ``DeformableDETR.pre_transformer`` builds from each ``img_shape``."""
    rows = torch.arange(image.shape[2], device=image.device).view(1, -1, 1) >= image_size[:, 0].view(-1, 1, 1)
    columns = torch.arange(image.shape[3], device=image.device).view(1, 1, -1) >= image_size[:, 1].view(-1, 1, 1)
    return (rows | columns).to(image.dtype)


def encoder_output_proposals(detector, memory: torch.Tensor, level_masks: Sequence[torch.Tensor],
                             sizes: LevelSizes) -> Tuple[torch.Tensor, torch.Tensor]:
    """``DeformableDETR.gen_encoder_output_proposals`` with padding masks, for integer level sizes (a grid of
    ``arange``, which equals its ``linspace``): the transformed memory and the proposals (inverse sigmoid of
    ``cx, cy, w, h``; ``inf`` where padded or near the border)."""
    batch = memory.shape[0]
    proposals = []
    for level, ((height, width), mask) in enumerate(zip(sizes, level_masks)):
        valid_height = (~mask[:, :, 0]).sum(1, keepdim=True)
        valid_width = (~mask[:, 0, :]).sum(1, keepdim=True)
        scale = torch.cat([valid_width, valid_height], 1).view(batch, 1, 1, 2)
        grid_y, grid_x = torch.meshgrid(torch.arange(height, dtype=torch.float32, device=memory.device),
                                        torch.arange(width, dtype=torch.float32, device=memory.device),
                                        indexing='ij')
        grid = torch.cat([grid_x.unsqueeze(-1), grid_y.unsqueeze(-1)], -1)
        grid = (grid.unsqueeze(0).expand(batch, -1, -1, -1) + 0.5) / scale
        size = torch.ones_like(grid) * 0.05 * (2.0**level)
        proposals.append(torch.cat((grid, size), -1).view(batch, -1, 4))
    proposals = torch.cat(proposals, 1)
    inside = ((proposals > 0.01) & (proposals < 0.99)).sum(-1, keepdim=True) == proposals.shape[-1]
    padded = torch.cat([mask.flatten(1) for mask in level_masks], 1).unsqueeze(-1)
    proposals = torch.log(proposals / (1 - proposals)).masked_fill(padded, float('inf'))
    proposals = proposals.masked_fill(~inside, float('inf'))
    memory = memory.masked_fill(padded, 0.0).masked_fill(~inside, 0.0)
    return detector.memory_trans_norm(detector.memory_trans_fc(memory)), proposals


def dino_decoder_outputs(detector, feats: Sequence[torch.Tensor], image: torch.Tensor,
                         image_size: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """DINO's ``forward_transformer`` and head at test time: class logits ``(N, Q, C)`` and boxes
    ``(N, Q, 4)`` (normalised ``cx, cy, w, h``) of the last decoder layer.

    mmdet uses padding masks only when some image of the batch is padded; with none padded the masks are all
    zero and give the same numbers, so they are always used here (from ``image_size``, which the graph reads at
    run time)."""
    masks = padding_masks(image, image_size)
    level_masks = [F.interpolate(masks[None], size=feat.shape[-2:]).to(torch.bool).squeeze(0) for feat in feats]
    sizes = level_sizes(feats)
    # pre_transformer
    query = torch.cat([feat.flatten(2).permute(0, 2, 1) for feat in feats], 1)
    query_pos = torch.cat([detector.positional_encoding(mask).flatten(2).permute(0, 2, 1)
                           + detector.level_embed[level].view(1, 1, -1) for level, mask in enumerate(level_masks)], 1)
    mask_flat = torch.cat([mask.flatten(1) for mask in level_masks], 1)
    valid_ratios = torch.stack([detector.get_valid_ratio(mask) for mask in level_masks], 1)
    # forward_encoder
    reference_points = encoder_reference_points(sizes, valid_ratios)
    memory = query
    for layer in detector.encoder.layers:
        memory = layer(query=memory, query_pos=query_pos, key_padding_mask=mask_flat, spatial_shapes=sizes,
                       level_start_index=None, valid_ratios=valid_ratios, reference_points=reference_points)
    # pre_decoder: the best num_queries encoder proposals seed the decoder's reference boxes
    head, num_layers = detector.bbox_head, detector.decoder.num_layers
    output_memory, proposals = encoder_output_proposals(detector, memory, level_masks, sizes)
    proposal_logits = head.cls_branches[num_layers](output_memory)
    proposal_boxes = head.reg_branches[num_layers](output_memory) + proposals
    top = proposal_logits.max(-1)[0].topk(detector.num_queries, dim=1)[1]
    reference_points = proposal_boxes.gather(1, top.unsqueeze(-1).repeat(1, 1, 4)).sigmoid()
    queries = detector.query_embedding.weight[:, None, :].repeat(1, memory.shape[0], 1).transpose(0, 1)
    # forward_decoder without its `len(query)` test (for training), which would fix the batch size
    hidden_states, references = detector.decoder(
        query=queries, value=memory, key_padding_mask=mask_flat, self_attn_mask=None,
        reference_points=reference_points, spatial_shapes=sizes, level_start_index=None, valid_ratios=valid_ratios,
        reg_branches=head.reg_branches)
    all_logits, all_boxes = head(hidden_states, list(references))
    return all_logits[-1], all_boxes[-1]


def detr_detections(head, logits: torch.Tensor, boxes: torch.Tensor,
                    image_size: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``DETRHead._predict_by_feat_single`` for the batch (no rescale): the best ``max_per_img`` (query, class)
    scores, boxes scaled to and clipped by each image's size. Every row is a detection (no NMS, no threshold)."""
    from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
    count = head.test_cfg.get('max_per_img', logits.shape[1])
    if head.loss_cls.use_sigmoid:
        scores, index = logits.sigmoid().flatten(1).topk(top_count(count, logits.shape[1] * head.num_classes), dim=1)
        labels = index % head.num_classes
        query = torch.div(index, head.num_classes, rounding_mode='floor')
    else:
        scores, labels = logits.softmax(-1)[..., :-1].max(-1)
        scores, query = scores.topk(top_count(count, scores.shape[1]), dim=1)
        labels = labels.gather(1, query)
    size = image_size.flip(-1).to(boxes.dtype).repeat(1, 2).unsqueeze(1)  # (w, h, w, h) per image
    xyxy = clip_to_images(bbox_cxcywh_to_xyxy(gather_rows(boxes, query)) * size, image_size)
    return torch.cat([xyxy, scores.unsqueeze(-1)], -1), labels


# ----------------------------------------------------------------------------------------------------------------
# Whole detectors


class DetectorPredictions(nn.Module):
    """An mmdet detector as ``(image, image_size) -> (dets, labels[, masks])``; see the module docstring.

    Supported: one-stage detectors whose head has no score factors (RTMDet, SSD / SSDLite, RetinaNet),
    two-stage detectors with a standard or cascade RoI head, with or without masks (Faster / Mask / Cascade
    Mask R-CNN), and DINO (:func:`dino_decoder_outputs`, :func:`detr_detections`; every row a detection). Anything
    else raises :class:`DetectionExportError` naming what is supported.
    """

    def __init__(self, detector: nn.Module):
        super().__init__()
        from mmdet.models.detectors import DINO, SingleStageDetector, TwoStageDetector
        self.detector = detector
        # off: a one-stage detector's graph ends before its NMS, with its ranked candidates (ranked_candidates)
        self.nms_in_graph = True
        self.two_stage = isinstance(detector, TwoStageDetector)
        self.dino = isinstance(detector, DINO)
        if self.dino:
            self.with_mask = False
            require_plain_classifier(detector.bbox_head)
        elif self.two_stage:
            if not detector.with_rpn:
                raise DetectionExportError('Two-stage detectors without an RPN are not supported.')
            self.heads = TwoStageHeads(detector.roi_head)
            self.with_mask = self.heads.with_mask
        elif isinstance(detector, SingleStageDetector):
            self.with_mask = False
        else:
            raise DetectionExportError(
                f'{type(detector).__name__} is not supported; supported: one-stage detectors (RTMDet, SSD, '
                'RetinaNet), two-stage detectors (Faster / Mask / Cascade Mask R-CNN) and DINO.')

    @property
    def output_names(self) -> List[str]:
        return ['dets', 'labels'] + (['masks'] if self.with_mask else [])

    @property
    def uses_nms(self) -> bool:
        """Whether the graph holds NMS (the custom operator ``mmlightvit::multiclass_nms``): every detector but
        DINO, whose post-processing is a top-k, unless ``nms_in_graph`` is off."""
        return not self.dino and self.nms_in_graph

    @property
    def nms_settings(self) -> Optional[dict]:
        """A one-stage detector's NMS settings (:func:`dense_nms_settings`), for running its NMS after a graph
        without it; None for the others (two-stage detectors run NMS between their stages, DINO runs none)."""
        if self.dino or self.two_stage:
            return None
        head = self.detector.bbox_head
        return dense_nms_settings(head, head.test_cfg)

    def forward(self, image: torch.Tensor, image_size: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        detector = self.detector
        feats = detector.extract_feat(image)
        if self.dino:
            logits, boxes = dino_decoder_outputs(detector, feats, image, image_size)
            return detr_detections(detector.bbox_head, logits, boxes, image_size)
        if not self.two_stage:
            head = detector.bbox_head
            if not self.nms_in_graph:
                return ranked_candidates(*dense_head_candidates(head, feats, image_size, head.test_cfg))
            return dense_head_detections(head, feats, image_size, head.test_cfg)
        proposals, is_proposal = rpn_proposals(detector.rpn_head, feats, image_size, detector.test_cfg.rpn)
        rcnn_cfg = detector.test_cfg.rcnn
        dets, labels = roi_detections(self.heads, feats, proposals, is_proposal, image_size, rcnn_cfg)
        if not self.with_mask:
            return dets, labels
        return dets, labels, roi_masks(self.heads, feats, dets, labels)


def mmdet_predictions(detector: nn.Module, image: torch.Tensor, image_size: torch.Tensor,
                      max_count: Optional[int] = None) -> List[dict]:
    """mmdet's own ``predict`` (no rescale) on the same batch, as one dict of tensors per image: the reference
    the tensor-form post-processing is checked against."""
    from mmdet.structures import DetDataSample
    samples = []
    for size in image_size.tolist():
        sample = DetDataSample()
        shape, padded = tuple(size), tuple(image.shape[2:])
        sample.set_metainfo(dict(img_shape=shape, ori_shape=shape, pad_shape=padded, batch_input_shape=padded,
                                 scale_factor=(1.0, 1.0)))
        samples.append(sample)
    with torch.no_grad():
        results = detector.predict(image, samples, rescale=False)
    out = []
    for result in results:
        pred = result.pred_instances
        item = dict(boxes=pred.bboxes, scores=pred.scores, labels=pred.labels)
        if 'masks' in pred:
            item['masks'] = pred.masks
        out.append({k: v[:max_count] for k, v in item.items()} if max_count else item)
    return out
