"""The released FasterViT detector (``DINO_4scale_faster_vit_4_21k_224_ms_coco.pth``, 55.16 box AP) read into
mmdet 3.3's DINO with the project's FasterViT backbone (``configs/fastervit/dino-4scale_fastervit-4-21k_coco.py``).

The file is a training checkpoint of IDEA-Research's DINO code as NVlabs/FasterViT vendors it
(``downstream/object_detection/dino``): ``model``, ``optimizer``, ``lr_scheduler``, ``epoch``, ``args``.
:func:`is_idea_dino_state` recognises the weights by their names and :func:`convert_idea_dino_state` maps them onto
the keys and shapes of our model; the strict load check then names whatever does not fit.

Decisions, and why:

* **Which weights.** ``checkpoint['model']``. The official evaluation (``main.py --eval --resume FILE``) loads
  ``checkpoint['model']`` into the model it evaluates; ``ema_model`` exists only with ``use_ema``, which the
  release's config (``DINO_4scale_faster_vit_4_21k_224.py``) leaves off. ``extract_state_dict`` takes ``model``
  for such a file (there is no ``state_dict``, and ``ema_model`` is not a key it looks for). ``optimizer``,
  ``lr_scheduler``, ``epoch`` and ``args`` hold no model weights and are not read.
* **Backbone.** ``backbone.0`` is the FasterViT module itself (``backbone.1``, the sine position encoding of the
  official ``Joiner``, has no tensors). Its names are those of the official ImageNet releases plus one BatchNorm
  ``norm{i}`` per returned map, which is what our ``out_norm_cfg=dict(type='BN')`` builds under the same names, so
  the backbone's own ``convert_checkpoint`` reads it as it reads an ImageNet release (dropping the size-dependent
  position-bias buffers, which are recomputed for every input size). Output norms that the file lacks are not
  filled from the model: the strict check names them.
* **Input projections.** ``input_proj.{i}`` (1x1 conv + GroupNorm per backbone map, then a 3x3 stride-2 conv +
  GroupNorm for the extra level) is mmdet's ChannelMapper: ``neck.convs.{i}`` and ``neck.extra_convs.{j}``. The
  official convs have biases, which GroupNorm does not cancel (it normalises groups of channels, so a per-channel
  offset survives): the config's neck has ``bias=True``.
* **Transformer.** Renames only, every tensor keeps its shape: the deformable attention modules have mmcv's names
  already; the decoder's ``nn.MultiheadAttention`` sits under mmcv's wrapper (``self_attn.attn``); ``linear1`` /
  ``linear2`` are mmdet's ``ffn.layers.0.0`` / ``ffn.layers.1``; the norms are numbered by position: the encoder's
  ``norm1`` (after attention) and ``norm2`` (after the FFN) are ``norms.0`` / ``norms.1``, the decoder's ``norm2``
  (after self-attention), ``norm1`` (after cross-attention) and ``norm3`` (after the FFN) are ``norms.0`` /
  ``norms.1`` / ``norms.2``. ``tgt_embed`` is the learnt query content (``query_embedding``), ``enc_output`` /
  ``enc_output_norm`` the encoder-output projection (``memory_trans_fc`` / ``memory_trans_norm``). With the
  two-stage type 'standard' there is no ``refpoint_embed``.
* **Shared heads.** The official decoder shares one class head and one box head across its layers
  (``dec_pred_class_embed_share`` / ``dec_pred_bbox_embed_share``); mmdet's DINO has one per layer, so each layer's
  ``class_embed.{i}`` / ``bbox_embed.{i}`` (the same tensors when shared) is copied into ``cls_branches.{i}`` /
  ``reg_branches.{i}``: the same outputs. ``transformer.decoder.{class,bbox}_embed.*`` are the same modules
  registered a second time (the decoder refines its boxes with them), so they are dropped. The encoder's output
  heads ``transformer.enc_out_{class,bbox}_embed`` are separate modules (``two_stage_*_share`` off) and fill
  mmdet's extra, last branch, which its two-stage DINO uses for the encoder output.
* **91 classes.** The official class heads have 91 outputs indexed by COCO category id (``num_classes=91``; ids
  1-90 with 10 gaps, 0 unused) and the denoising label embedding 92 rows (``dn_labelbook_size`` 91 + 1, also by
  id). mmdet's classes are the 80 categories in CocoDataset's order, which is ascending id, so our row ``i`` is the
  official row ``COCO_CATEGORY_IDS[i]``. The rows of ids without a category are dropped: no box of theirs ever
  trained them as positives. They are the one difference in what the two models compute: the official code picks
  its 300 detections, and the encoder its queries, among all 91 columns, ours among the 80 categories, which
  differs only where such a row scores among the highest (focal loss drives those rows down).

What no renaming can carry over: the official DINO code's FasterViT computes differently from the ImageNet model
that our backbone follows, in two places (its absolute position embedding normalises the window coordinates by
half the window's token count, and it pads the two conv stages to multiples of 7 as well); see
``configs/fastervit/README.md``.
"""
import re
from collections import OrderedDict
from typing import Callable, Dict, List, Tuple, Union

import torch
import torch.nn as nn

#: The 80 COCO category ids in mmdet's class order (CocoDataset classes are the ids in ascending order).
COCO_CATEGORY_IDS: Tuple[int, ...] = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32, 33, 34,
    35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63,
    64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90)

#: Where the official FasterViT module sits in the IDEA DINO model (index 0 of the backbone ``Joiner``).
BACKBONE_PREFIX = 'backbone.0.'
#: The decoder's second registration of the detector's class / box heads (the same modules).
HEAD_ALIAS_PREFIXES = ('transformer.decoder.class_embed.', 'transformer.decoder.bbox_embed.')

_Rename = Union[str, Callable[[re.Match], str]]


def _detector_renames(num_decoder_layers: int, num_backbone_maps: int) -> List[Tuple[str, _Rename]]:
    """(official key pattern, our key): the transformer, the input projections and the heads."""
    enc, dec = r'transformer\.encoder\.layers\.(\d+)\.', r'transformer\.decoder\.layers\.(\d+)\.'
    last = num_decoder_layers  # mmdet's extra branch for the encoder output

    def input_proj(m: re.Match) -> str:
        level, part, param = int(m[1]), 'conv' if m[2] == '0' else 'gn', m[3]
        if level < num_backbone_maps:
            return f'neck.convs.{level}.{part}.{param}'
        return f'neck.extra_convs.{level - num_backbone_maps}.{part}.{param}'

    return [
        (r'input_proj\.(\d+)\.([01])\.(weight|bias)', input_proj),
        (r'transformer\.level_embed', 'level_embed'),
        (r'transformer\.tgt_embed\.weight', 'query_embedding.weight'),
        (r'transformer\.enc_output\.(weight|bias)', r'memory_trans_fc.\1'),
        (r'transformer\.enc_output_norm\.(weight|bias)', r'memory_trans_norm.\1'),
        (enc + r'self_attn\.(.+)', r'encoder.layers.\1.self_attn.\2'),
        (enc + r'norm1\.(.+)', r'encoder.layers.\1.norms.0.\2'),
        (enc + r'linear1\.(.+)', r'encoder.layers.\1.ffn.layers.0.0.\2'),
        (enc + r'linear2\.(.+)', r'encoder.layers.\1.ffn.layers.1.\2'),
        (enc + r'norm2\.(.+)', r'encoder.layers.\1.norms.1.\2'),
        (dec + r'self_attn\.(.+)', r'decoder.layers.\1.self_attn.attn.\2'),
        (dec + r'norm2\.(.+)', r'decoder.layers.\1.norms.0.\2'),
        (dec + r'cross_attn\.(.+)', r'decoder.layers.\1.cross_attn.\2'),
        (dec + r'norm1\.(.+)', r'decoder.layers.\1.norms.1.\2'),
        (dec + r'linear1\.(.+)', r'decoder.layers.\1.ffn.layers.0.0.\2'),
        (dec + r'linear2\.(.+)', r'decoder.layers.\1.ffn.layers.1.\2'),
        (dec + r'norm3\.(.+)', r'decoder.layers.\1.norms.2.\2'),
        (r'transformer\.decoder\.norm\.(weight|bias)', r'decoder.norm.\1'),
        (r'transformer\.decoder\.ref_point_head\.(.+)', r'decoder.ref_point_head.\1'),
        (r'class_embed\.(\d+)\.(weight|bias)', r'bbox_head.cls_branches.\1.\2'),
        # the official box MLP's layers.{j} (ReLUs are not modules) are the Linear modules {2j} of mmdet's
        # Sequential(Linear, ReLU, Linear, ReLU, Linear)
        (r'bbox_embed\.(\d+)\.layers\.(\d+)\.(weight|bias)',
         lambda m: f'bbox_head.reg_branches.{m[1]}.{2 * int(m[2])}.{m[3]}'),
        (r'transformer\.enc_out_class_embed\.(weight|bias)', rf'bbox_head.cls_branches.{last}.\1'),
        (r'transformer\.enc_out_bbox_embed\.layers\.(\d+)\.(weight|bias)',
         lambda m: f'bbox_head.reg_branches.{last}.{2 * int(m[1])}.{m[2]}'),
        (r'label_enc\.weight', 'dn_query_generator.label_embedding.weight'),
    ]


#: Our keys whose rows are indexed by COCO category id in the official file.
CATEGORY_ROW_KEYS = re.compile(
    r'bbox_head\.cls_branches\.\d+\.(weight|bias)|dn_query_generator\.label_embedding\.weight')


def is_idea_dino_state(state: Dict[str, torch.Tensor]) -> bool:
    """Whether a state dict is an IDEA-Research DINO model (``transformer.*``, ``input_proj.*``, ``label_enc``)."""
    return 'label_enc.weight' in state and any(k.startswith('transformer.decoder.') for k in state) \
        and any(k.startswith('input_proj.') for k in state)


def category_rows(tensor: torch.Tensor) -> torch.Tensor:
    """The rows of the 80 COCO categories, in mmdet's class order, of a tensor indexed by category id (the official
    91-row classifier, 92-row label embedding); a tensor with fewer rows is returned as it is (the strict check
    then reports its shape)."""
    if tensor.shape[0] <= max(COCO_CATEGORY_IDS):
        return tensor
    return tensor[list(COCO_CATEGORY_IDS)]


def convert_idea_dino_state(state: Dict[str, torch.Tensor], model: nn.Module) -> 'OrderedDict[str, torch.Tensor]':
    """An IDEA DINO state dict (the official FasterViT DINO release's ``model``) in the keys and shapes of
    ``model``, mmdet's DINO with the project's FasterViT backbone. See the module docstring for what is mapped how
    and what is dropped; a key that is neither keeps its name, so that the strict check names it."""
    renames = [(re.compile(pattern), target)
               for pattern, target in _detector_renames(model.decoder.num_layers, len(model.neck.convs))]
    converted, official_backbone = OrderedDict(), OrderedDict()
    for key, value in state.items():
        if key.startswith(BACKBONE_PREFIX):
            official_backbone[key[len(BACKBONE_PREFIX):]] = value
            continue
        if key.startswith(HEAD_ALIAS_PREFIXES):
            continue
        for pattern, target in renames:
            match = pattern.fullmatch(key)
            if match:
                key = target(match) if callable(target) else match.expand(target)
                if CATEGORY_ROW_KEYS.fullmatch(key):
                    value = category_rows(value)
                break
        converted[key] = value

    converted.update(('backbone.' + k, v) for k, v in model.backbone.convert_checkpoint(official_backbone).items())
    return converted
