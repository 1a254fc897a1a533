"""Multi-scale deformable attention (mmcv's ``MultiScaleDeformableAttention``) with level sizes that stay dynamic
in an exported graph: DINO's encoder and decoder, Mask2Former's pixel decoder.

mmcv and mmdet carry the levels' sizes as a tensor ``spatial_shapes (L, 2)`` and iterate over it in Python
(``value.split([H * W for H, W in spatial_shapes])``, the reference grids, the split of the encoder's output):
each size read from that tensor is data to torch.export, which fails or fixes it to the traced size. Here the
sizes are ``level_sizes``, a list of ``(height, width)`` taken from the feature maps' shapes (Python integers,
symbolic during export), and the arithmetic is mmcv's / mmdet's on them:

* :class:`ExportableDeformableAttention` replaces each ``MultiScaleDeformableAttention`` of a model
  (:func:`replace_deformable_attention`, sharing its weights); mmdet's layers pass ``spatial_shapes`` through to
  it unread, so they run unchanged with ``level_sizes`` in its place. Given a tensor it is mmcv's module.
* :class:`ExportablePixelDecoder` replaces mmdet's ``MSDeformAttnPixelDecoder`` (Mask2Former) likewise;
* :func:`encoder_reference_points` is ``DeformableDetrTransformerEncoder.get_encoder_reference_points``;
  ``torch.arange(n) + 0.5`` is exactly ``torch.linspace(0.5, n - 0.5, n)`` (its step is 1).
"""
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

LevelSizes = List[Tuple[int, int]]


def level_sizes(feats: Sequence[torch.Tensor]) -> LevelSizes:
    """The ``(height, width)`` of each map ``(N, C, H, W)`` of ``feats``, symbolic during export."""
    return [(feat.shape[-2], feat.shape[-1]) for feat in feats]


def size_tensor(sizes: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    """``sizes`` (integers, symbolic during export) as a tensor of ``like``'s dtype; ``torch.tensor`` would fix
    symbolic sizes to the traced ones."""
    return torch.stack([torch.full((), size, dtype=like.dtype, device=like.device) for size in sizes])


def deformable_attention_pytorch(value: torch.Tensor, sizes: LevelSizes, sampling_locations: torch.Tensor,
                                 attention_weights: torch.Tensor) -> torch.Tensor:
    """mmcv's ``multi_scale_deformable_attn_pytorch`` (bilinear ``grid_sample`` per level) with the level sizes
    as integers: ``value (N, sum H*W, heads, C)`` -> ``(N, queries, heads * C)``."""
    batch, _, num_heads, channels = value.shape
    _, num_queries, _, num_levels, num_points, _ = sampling_locations.shape
    value_list = value.split([height * width for height, width in sizes], dim=1)
    sampling_grids = 2 * sampling_locations - 1
    sampled = []
    for level, (height, width) in enumerate(sizes):
        level_value = value_list[level].flatten(2).transpose(1, 2).reshape(batch * num_heads, channels, height, width)
        level_grid = sampling_grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(level_value, level_grid, mode='bilinear', padding_mode='zeros',
                                     align_corners=False))
    attention_weights = attention_weights.transpose(1, 2).reshape(batch * num_heads, 1, num_queries,
                                                                  num_levels * num_points)
    output = (torch.stack(sampled, dim=-2).flatten(-2) * attention_weights).sum(-1)
    return output.view(batch, num_heads * channels, num_queries).transpose(1, 2).contiguous()


class ExportableDeformableAttention(nn.Module):
    """mmcv's ``MultiScaleDeformableAttention`` (its weights, its forward) taking ``spatial_shapes`` as
    :data:`LevelSizes`; see the module docstring. The eval-mode forward (dropout is the identity)."""

    def __init__(self, attention: nn.Module):
        super().__init__()
        self.attention = attention

    def forward(self, query: torch.Tensor, key=None, value=None, identity=None, query_pos=None,
                key_padding_mask=None, reference_points=None, spatial_shapes=None, level_start_index=None,
                **kwargs) -> torch.Tensor:
        attn = self.attention
        if isinstance(spatial_shapes, torch.Tensor):  # mmdet's own call: mmcv's module as it is
            return attn(query, key, value, identity, query_pos, key_padding_mask, reference_points, spatial_shapes,
                        level_start_index, **kwargs)
        value = query if value is None else value
        identity = query if identity is None else identity
        if query_pos is not None:
            query = query + query_pos
        if not attn.batch_first:
            query, value = query.permute(1, 0, 2), value.permute(1, 0, 2)
        batch, num_query, _ = query.shape
        num_value = value.shape[1]
        value = attn.value_proj(value)
        if key_padding_mask is not None:
            value = value.masked_fill(key_padding_mask[..., None], 0.0)
        value = value.view(batch, num_value, attn.num_heads, -1)
        offsets = attn.sampling_offsets(query).view(batch, num_query, attn.num_heads, attn.num_levels,
                                                    attn.num_points, 2)
        weights = attn.attention_weights(query).view(batch, num_query, attn.num_heads,
                                                     attn.num_levels * attn.num_points).softmax(-1)
        weights = weights.view(batch, num_query, attn.num_heads, attn.num_levels, attn.num_points)
        if reference_points.shape[-1] == 2:
            normalizer = torch.stack([size_tensor((width, height), offsets) for height, width in spatial_shapes])
            locations = reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
        else:
            locations = reference_points[:, :, None, :, None, :2] \
                + offsets / attn.num_points * reference_points[:, :, None, :, None, 2:] * 0.5
        output = attn.output_proj(deformable_attention_pytorch(value, spatial_shapes, locations, weights))
        if not attn.batch_first:
            output = output.permute(1, 0, 2)
        return attn.dropout(output) + identity


class ExportablePixelDecoder(nn.Module):
    """mmdet's ``MSDeformAttnPixelDecoder`` (Mask2Former's; its weights, its forward) with the encoder levels' sizes
    as :data:`LevelSizes`: mmdet splits the encoder's output by sizes read from a tensor."""

    def __init__(self, decoder: nn.Module):
        super().__init__()
        self.decoder = decoder

    def forward(self, feats: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        decoder = self.decoder
        batch = feats[0].shape[0]
        inputs, positions, points, encoder_feats = [], [], [], []
        for i in range(decoder.num_encoder_levels):
            level = decoder.num_input_levels - i - 1
            feat = feats[level]
            encoder_feats.append(feat)
            no_padding = feat.new_zeros((batch, ) + feat.shape[-2:], dtype=torch.bool)
            position = decoder.level_encoding.weight[i].view(1, -1, 1, 1) + decoder.postional_encoding(no_padding)
            grid = decoder.point_generator.single_level_grid_priors(feat.shape[-2:], level, device=feat.device)
            # mmdet divides by the level's (width, height) times its stride
            scale = size_tensor((feat.shape[-1], feat.shape[-2]), grid) * decoder.strides[level]
            inputs.append(decoder.input_convs[i](feat).flatten(2).permute(0, 2, 1))
            positions.append(position.flatten(2).permute(0, 2, 1))
            points.append(grid / scale)
        sizes = level_sizes(encoder_feats)
        count = decoder.num_encoder_levels
        reference_points = torch.cat(points, dim=0)[None, :, None].repeat(batch, 1, count, 1)
        queries = torch.cat(inputs, dim=1)
        memory = decoder.encoder(
            query=queries, query_pos=torch.cat(positions, dim=1),
            key_padding_mask=queries.new_zeros(queries.shape[:2], dtype=torch.bool), spatial_shapes=sizes,
            reference_points=reference_points, level_start_index=None,
            valid_ratios=reference_points.new_ones((batch, count, 2)))
        memory = memory.permute(0, 2, 1)
        outs = [x.reshape(batch, -1, height, width)
                for x, (height, width) in zip(torch.split(memory, [h * w for h, w in sizes], dim=-1), sizes)]
        for i in range(decoder.num_input_levels - decoder.num_encoder_levels - 1, -1, -1):
            lateral = decoder.lateral_convs[i](feats[i])
            merged = lateral + F.interpolate(outs[-1], size=lateral.shape[-2:], mode='bilinear', align_corners=False)
            outs.append(decoder.output_convs[i](merged))
        return decoder.mask_feature(outs[-1]), outs[:decoder.num_outs]


def replace_deformable_attention(model: nn.Module) -> int:
    """Wrap every mmcv ``MultiScaleDeformableAttention`` of ``model`` in :class:`ExportableDeformableAttention`
    and every mmdet ``MSDeformAttnPixelDecoder`` in :class:`ExportablePixelDecoder`; returns how many modules were
    wrapped."""
    from mmcv.ops import MultiScaleDeformableAttention
    from mmdet.models.layers import MSDeformAttnPixelDecoder
    wrappers = ((MultiScaleDeformableAttention, ExportableDeformableAttention),
                (MSDeformAttnPixelDecoder, ExportablePixelDecoder))
    replaced = 0
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            for kind, wrapper in wrappers:
                if type(child) is kind:
                    setattr(parent, name, wrapper(child))
                    replaced += 1
    return replaced


def encoder_reference_points(sizes: LevelSizes, valid_ratios: torch.Tensor) -> torch.Tensor:
    """mmdet's ``DeformableDetrTransformerEncoder.get_encoder_reference_points`` for integer level sizes:
    ``(N, sum H*W, levels, 2)``."""
    points = []
    for level, (height, width) in enumerate(sizes):
        ref_y, ref_x = torch.meshgrid(
            torch.arange(height, dtype=torch.float32, device=valid_ratios.device) + 0.5,
            torch.arange(width, dtype=torch.float32, device=valid_ratios.device) + 0.5, indexing='ij')
        ref_y = ref_y.reshape(-1)[None] / (valid_ratios[:, None, level, 1] * height)
        ref_x = ref_x.reshape(-1)[None] / (valid_ratios[:, None, level, 0] * width)
        points.append(torch.stack((ref_x, ref_y), -1))
    return torch.cat(points, 1)[:, :, None] * valid_ratios[:, None]
