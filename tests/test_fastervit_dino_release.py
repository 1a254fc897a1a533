"""The released FasterViT DINO (``DINO_4scale_faster_vit_4_21k_224_ms_coco.pth``, a training checkpoint of
IDEA-Research's DINO code) loads strictly into ``configs/fastervit/dino-4scale_fastervit-4-21k_coco.py`` through the
path tools/test.py takes (see mmlightvit/models/dino_release.py).

No release can be downloaded here. The key test writes the official model's names and shapes from the official
module tree (NVlabs/FasterViT ``downstream/object_detection/dino``: ``models/dino/dino.py``,
``deformable_transformer.py``, ``ops/modules/ms_deform_attn.py``, ``fastervit.py`` and the release's config); the
numeric tests write a file as the official ``main.py`` saves it around a randomly initialised, scaled-down model.
"""
import argparse
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from mmdet.datasets import CocoDataset
from mmdet.structures import DetDataSample
from mmengine.registry import MODELS, init_default_scope

from mmlightvit.engine import build_runner, load_config, prepare_run
from mmlightvit.models.dino_release import COCO_CATEGORY_IDS, convert_idea_dino_state, is_idea_dino_state
from mmlightvit.utils import CheckpointError
from tests.conftest import read_config
from tests.test_reproduction import assert_same_state

ROOT = Path(__file__).resolve().parents[1]
CONFIG = 'configs/fastervit/dino-4scale_fastervit-4-21k_coco.py'
#: the COCO category ids without a category (plus 0): rows of the official 91-output head that have no class here
NO_CATEGORY_IDS = (0, 12, 26, 29, 30, 45, 66, 68, 69, 71, 83)


def official_detector_shapes(backbone_channels, num_encoder_layers=6, num_decoder_layers=6, ffn_channels=2048,
                             num_queries=900, num_classes=91, hidden=256, num_levels=4, num_heads=8, num_points=4):
    """Names and shapes of the IDEA DINO model's tensors outside the backbone, as the official code builds them
    with the release's config (two-stage 'standard', shared decoder heads, separate encoder-output heads,
    ``dn_labelbook_size`` = ``num_classes``)."""
    shapes = OrderedDict()

    def add(prefix, **tensors):
        shapes.update((f'{prefix}.{name}', shape) for name, shape in tensors.items())

    def linear(prefix, out_features, in_features):
        add(prefix, weight=(out_features, in_features), bias=(out_features, ))

    def layer_norm(prefix):
        add(prefix, weight=(hidden, ), bias=(hidden, ))

    def deformable_attention(prefix):
        linear(f'{prefix}.sampling_offsets', num_heads * num_levels * num_points * 2, hidden)
        linear(f'{prefix}.attention_weights', num_heads * num_levels * num_points, hidden)
        linear(f'{prefix}.value_proj', hidden, hidden)
        linear(f'{prefix}.output_proj', hidden, hidden)

    def box_mlp(prefix):  # MLP(hidden, hidden, 4, 3)
        for j, out_features in enumerate((hidden, hidden, 4)):
            linear(f'{prefix}.layers.{j}', out_features, hidden)

    # input_proj: 1x1 conv + GroupNorm per backbone map, then 3x3 stride-2 convs for the extra levels
    in_channels = list(backbone_channels)
    for level in range(num_levels):
        kernel = 1 if level < len(backbone_channels) else 3
        channels = in_channels[level] if level < len(backbone_channels) else in_channels[-1]
        add(f'input_proj.{level}.0', weight=(hidden, channels, kernel, kernel), bias=(hidden, ))
        add(f'input_proj.{level}.1', weight=(hidden, ), bias=(hidden, ))
    add('transformer', level_embed=(num_levels, hidden))
    add('transformer.tgt_embed', weight=(num_queries, hidden))
    linear('transformer.enc_output', hidden, hidden)
    layer_norm('transformer.enc_output_norm')
    for i in range(num_encoder_layers):
        layer = f'transformer.encoder.layers.{i}'
        deformable_attention(f'{layer}.self_attn')
        layer_norm(f'{layer}.norm1')
        linear(f'{layer}.linear1', ffn_channels, hidden)
        linear(f'{layer}.linear2', hidden, ffn_channels)
        layer_norm(f'{layer}.norm2')
    for i in range(num_decoder_layers):
        layer = f'transformer.decoder.layers.{i}'
        deformable_attention(f'{layer}.cross_attn')
        layer_norm(f'{layer}.norm1')
        add(f'{layer}.self_attn', in_proj_weight=(3 * hidden, hidden), in_proj_bias=(3 * hidden, ))
        linear(f'{layer}.self_attn.out_proj', hidden, hidden)
        layer_norm(f'{layer}.norm2')
        linear(f'{layer}.linear1', ffn_channels, hidden)
        linear(f'{layer}.linear2', hidden, ffn_channels)
        layer_norm(f'{layer}.norm3')
    layer_norm('transformer.decoder.norm')
    linear('transformer.decoder.ref_point_head.layers.0', hidden, 2 * hidden)
    linear('transformer.decoder.ref_point_head.layers.1', hidden, hidden)
    # DINO.class_embed / bbox_embed, registered again as the decoder's (the same modules)
    for owner in ('', 'transformer.decoder.'):
        for i in range(num_decoder_layers):
            linear(f'{owner}class_embed.{i}', num_classes, hidden)
            box_mlp(f'{owner}bbox_embed.{i}')
    linear('transformer.enc_out_class_embed', num_classes, hidden)
    box_mlp('transformer.enc_out_bbox_embed')
    add('label_enc', weight=(num_classes + 1, hidden))
    return shapes


def official_backbone_shapes(backbone):
    """The official DINO FasterViT's tensors: the ImageNet release's names (``to_official_state_dict``, already
    tested against the ``fastervit`` package) with ``norm{i}`` on the returned maps, plus the size-dependent
    position-bias buffers the official modules register (shapes of a 224 input; they are dropped)."""
    shapes = OrderedDict((k, tuple(v.shape)) for k, v in backbone.to_official_state_dict().items())
    for key in list(shapes):
        if key.endswith('.attn.pos_emb_funct.cpb_mlp.2.weight'):
            prefix, heads = key[:-len('cpb_mlp.2.weight')], shapes[key][0]
            shapes.update({prefix + 'relative_coords_table': (1, 27, 27, 2), prefix + 'relative_position_index':
                           (196, 196), prefix + 'relative_bias': (1, heads, 196, 196)})
        elif key.endswith('.pos_embed.cpb_mlp.2.weight'):
            shapes[key[:-len('cpb_mlp.2.weight')] + 'relative_bias'] = (1, 196, shapes[key][0])
    return shapes


def _build_on_meta(config: str):
    cfg = read_config(config)
    cfg.model.backbone.init_cfg = None
    init_default_scope(cfg.default_scope)
    with torch.device('meta'):
        return MODELS.build(cfg.model)


def test_release_keys_and_shapes_map_onto_the_config():
    """Every tensor of the official model maps onto a tensor of ours of the same shape, or is one the conversion
    drops on purpose; every tensor of ours is filled."""
    model = _build_on_meta(CONFIG)
    backbone = official_backbone_shapes(model.backbone)
    assert {'norm1.weight', 'norm3.running_var', 'levels.2.blocks.0.attn.pos_emb_funct.relative_bias',
            'levels.2.downsample.reduction.0.weight'} <= set(backbone)
    assert not any('hat_' in k or 'global_tokenizer' in k for k in backbone)  # faster_vit_4_21k_224: hat all False
    shapes = OrderedDict(('backbone.0.' + k, shape) for k, shape in backbone.items())
    shapes.update(official_detector_shapes(backbone_channels=(392, 784, 1568)))
    official = OrderedDict((k, torch.empty(shape, device='meta')) for k, shape in shapes.items())
    assert is_idea_dino_state(official) and not is_idea_dino_state(model.state_dict())

    converted = convert_idea_dino_state(official, model)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert sorted(set(converted) - set(expected)) == [] and sorted(set(expected) - set(converted)) == []
    assert {k: tuple(v.shape) for k, v in converted.items()} == expected

    # what was dropped: the decoder's second names of the shared heads and the size-dependent buffers
    dropped = len(official) - len(converted)
    aliases = [k for k in official if k.startswith(('transformer.decoder.class_embed.', 'transformer.decoder.bbox_'))]
    buffers = [k for k in official if k.rsplit('.', 1)[-1] in ('relative_bias', 'relative_coords_table',
                                                                'relative_position_index')]
    assert len(aliases) == 6 * (2 + 6) and dropped == len(aliases) + len(buffers)
    # parameters (README): the official model's, its shared decoder heads counted once (class_embed.0 and
    # bbox_embed.0 are the modules of every layer), against ours: 5 more head copies, 80 classes instead of 91
    shared = [k for k in official if k.startswith(('class_embed.', 'bbox_embed.')) and k.split('.')[1] != '0']
    official_params = sum(t.numel() for k, t in official.items() if k not in aliases + buffers + shared
                          and not k.endswith(('running_mean', 'running_var', 'num_batches_tracked')))
    ours = sum(p.numel() for p in model.parameters())
    head = (256 * 256 + 256) * 2 + 4 * 256 + 4 + 80 * 256 + 80
    assert ours - official_params == 5 * head - 2 * (91 - 80) * (256 + 1) - (92 - 80) * 256
    assert round(official_params / 1e6, 2) == 292.49 and round(ours / 1e6, 2) == 293.25


def test_category_rows_are_the_coco_ids_of_the_classes():
    """Row i of our 80-class head is the official row of the i-th class's COCO category id (CocoDataset order)."""
    classes = CocoDataset.METAINFO['classes']
    assert len(COCO_CATEGORY_IDS) == len(classes) == 80 and list(COCO_CATEGORY_IDS) == sorted(COCO_CATEGORY_IDS)
    assert sorted(set(range(91)) - set(COCO_CATEGORY_IDS)) == list(NO_CATEGORY_IDS)
    # from the official util/coco_id2name.json
    for name, category_id in [('person', 1), ('fire hydrant', 11), ('stop sign', 13), ('backpack', 27),
                              ('handbag', 31), ('wine glass', 46), ('dining table', 67), ('toilet', 70),
                              ('tv', 72), ('book', 84), ('toothbrush', 90)]:
        assert COCO_CATEGORY_IDS[classes.index(name)] == category_id, name


# ------------------------------------------------------------------------------------------------------------------
# A file as the official main.py saves it, loaded as tools/test.py loads it

#: The release's detector (80 COCO classes) scaled down: a small custom FasterViT with the 21K model's layout (no
#: carrier tokens, window 14 in stage 3, layer scale), 2 + 2 transformer layers, 100 queries.
SMALL = {
    'model.backbone.arch': dict(
        _delete_=True, dim=32, in_dim=16, depths=(1, 1, 2, 1), num_heads=(2, 2, 2, 4), layer_scale=1e-5),
    'model.backbone.with_cp': False,
    'model.neck.in_channels': [64, 128, 256],
    'model.num_queries': 100,
    'model.encoder.num_layers': 2,
    'model.encoder.layer_cfg.ffn_cfg.feedforward_channels': 256,
    'model.decoder.num_layers': 2,
    'model.decoder.layer_cfg.ffn_cfg.feedforward_channels': 256,
}


def _runner(work_dir, checkpoint):
    """A Runner as tools/test.py builds it to evaluate ``checkpoint``; ``load_or_resume()`` then loads the file as
    ``Runner.test()`` does first."""
    cfg = load_config(str(ROOT / CONFIG), cfg_options=SMALL, work_dir=str(work_dir))
    cfg.model.backbone.init_cfg = None
    prepare_run(cfg, training=False)
    cfg.load_from = checkpoint
    return build_runner(cfg)


def _by_category_id(tensor, rows):
    """Our per-class rows at their COCO ids in a tensor of ``rows`` rows; the rows without a category hold other
    values, so that taking a wrong row shows."""
    out = torch.full((rows, ) + tuple(tensor.shape[1:]), 7.0)
    out[list(COCO_CATEGORY_IDS)] = tensor
    return out


def idea_layout(model):
    """Our DINO's weights under the official names and shapes (written from the official module tree): the heads
    of each decoder layer as ``class_embed.{i}`` / ``bbox_embed.{i}`` and again as the decoder's, 91 class rows and
    92 label rows indexed by COCO category id."""
    ours = model.state_dict()
    state = OrderedDict(('backbone.0.' + k, v) for k, v in model.backbone.to_official_state_dict().items())
    num_maps, num_layers = len(model.neck.convs), model.decoder.num_layers
    for level in range(num_maps + len(model.neck.extra_convs)):
        neck = f'neck.convs.{level}' if level < num_maps else f'neck.extra_convs.{level - num_maps}'
        for official, part in (('0', 'conv'), ('1', 'gn')):
            for param in ('weight', 'bias'):
                state[f'input_proj.{level}.{official}.{param}'] = ours[f'{neck}.{part}.{param}']
    state['transformer.level_embed'] = ours['level_embed']
    state['transformer.tgt_embed.weight'] = ours['query_embedding.weight']
    for param in ('weight', 'bias'):
        state[f'transformer.enc_output.{param}'] = ours[f'memory_trans_fc.{param}']
        state[f'transformer.enc_output_norm.{param}'] = ours[f'memory_trans_norm.{param}']
    encoder_names = {'norms.0': 'norm1', 'ffn.layers.0.0': 'linear1', 'ffn.layers.1': 'linear2', 'norms.1': 'norm2'}
    decoder_names = {'self_attn.attn': 'self_attn', 'norms.0': 'norm2', 'norms.1': 'norm1', 'ffn.layers.0.0': 'linear1',
                     'ffn.layers.1': 'linear2', 'norms.2': 'norm3'}
    for key, value in ours.items():
        for part, names in (('encoder', encoder_names), ('decoder', decoder_names)):
            if key.startswith(f'{part}.layers.'):
                _, _, index, rest = key.split('.', 3)
                for our_name, official_name in names.items():
                    if rest.startswith(our_name + '.'):
                        rest = official_name + rest[len(our_name):]
                state[f'transformer.{part}.layers.{index}.{rest}'] = value
        if key.startswith(('decoder.norm.', 'decoder.ref_point_head.')):
            state['transformer.' + key] = value
    for i in range(num_layers + 1):
        official = f'class_embed.{i}' if i < num_layers else 'transformer.enc_out_class_embed'
        box = f'bbox_embed.{i}' if i < num_layers else 'transformer.enc_out_bbox_embed'
        owners = ['', 'transformer.decoder.'] if i < num_layers else ['']
        for owner in owners:
            for param in ('weight', 'bias'):
                state[f'{owner}{official}.{param}'] = _by_category_id(ours[f'bbox_head.cls_branches.{i}.{param}'], 91)
                for j in range(3):
                    state[f'{owner}{box}.layers.{j}.{param}'] = ours[f'bbox_head.reg_branches.{i}.{2 * j}.{param}']
    state['label_enc.weight'] = _by_category_id(ours['dn_query_generator.label_embedding.weight'], 92)
    return state


def _randomise(model, seed=0):
    """Every tensor distinct and finite (an untrained runner's level_embed is raw memory; mmdet's init copies one
    head into every layer), so that a tensor taken from the wrong place shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict(keep_vars=True).items():
            if tensor.is_floating_point():
                values = torch.rand(tensor.shape, generator=generator)
                tensor.copy_(values + 0.5 if 'running_var' in name else (values - 0.5) * 0.2)


def _predict(model, image):
    sample = DetDataSample(metainfo=dict(img_shape=image.shape[1:], ori_shape=image.shape[1:], scale_factor=(1., 1.)))
    model.eval()
    with torch.no_grad():
        return model.test_step(dict(inputs=[image], data_samples=[sample]))[0].pred_instances


def save_release(path, state, **extra):
    torch.save(dict(model=state, optimizer=dict(state={}, param_groups=[]), lr_scheduler=dict(last_epoch=12),
                    epoch=11, args=argparse.Namespace(backbone='faster_vit_4_21k_224', num_classes=91), **extra), path)


def test_release_file_loads_and_predicts_as_our_model(tmp_path):
    """The runner's model, randomised, is saved in the official layout; randomised again, it must come back bit for
    bit from the file (one runner for both: building one takes seconds)."""
    runner = _runner(tmp_path / 'work_dir', str(tmp_path / 'release.pth'))
    model = runner.model
    _randomise(model, seed=0)
    expected_state = OrderedDict((k, v.clone()) for k, v in model.state_dict().items())
    image = torch.randint(0, 256, (3, 96, 128), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    expected = _predict(model, image)
    assert len(expected) == 300 and expected.bboxes.isfinite().all()  # test_cfg.max_per_img
    release = idea_layout(model)
    assert is_idea_dino_state(release) and len(release['class_embed.0.weight']) == 91
    # EMA weights (use_ema) are not what the official evaluation reads: they must not be taken
    save_release(tmp_path / 'release.pth', release, ema_model={k: torch.zeros_like(v) for k, v in release.items()})

    _randomise(model, seed=1)
    assert not torch.equal(model.state_dict()['level_embed'], expected_state['level_embed'])
    runner.load_or_resume()
    assert_same_state(model.state_dict(), expected_state)
    found = _predict(model, image)
    for field in ('bboxes', 'scores', 'labels'):
        assert torch.equal(found[field], expected[field]), field

    # one tensor less: stopped, the key named (ours: decoder norm3 is the norm after the FFN, norms.2)
    del release['transformer.decoder.layers.1.norm3.weight']
    save_release(tmp_path / 'damaged.pth', release)
    with pytest.raises(CheckpointError, match=r'missing keys: decoder\.layers\.1\.norms\.2\.weight'):
        _runner(tmp_path / 'damaged', str(tmp_path / 'damaged.pth')).load_or_resume()
