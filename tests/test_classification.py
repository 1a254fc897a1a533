"""ImageNet classifiers (mmpretrain ``ImageClassifier`` + ``mmlightvit.LightClsHead``): a released classification
checkpoint of each family, in the official layout (and timm's where timm has the model), loads strictly into its
ImageNet config's model, classifier head included, and gives the reference implementation's logits; the configs
follow the papers' recipes; the demo classifiers train and evaluate, and ``tools/test.py`` evaluates a release."""
import re
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from mmengine.registry import init_default_scope

from mmlightvit.analysis.reference_models import build_reference
from mmlightvit.apis.model import load_model_weights
from mmlightvit.models.backbones import EdgeNeXt, RepViT, TransNeXt
from mmlightvit.utils.checkpoint import CheckpointError
from tests.backbone_utils import randomise_bn
from tests.conftest import NO_WORKERS, read_config, run_output

pytestmark = pytest.mark.usefixtures('single_thread')
ROOT = Path(__file__).resolve().parents[1]
IMAGENET_CONFIGS = sorted((ROOT / 'configs').glob('*/imagenet/*.py'))
PAPER_CONFIGS = [p for p in IMAGENET_CONFIGS if 'demo' not in p.name]
DEMO_CONFIGS = [p for p in IMAGENET_CONFIGS if 'demo' in p.name]


def _ids(paths):
    return [str(p.relative_to(ROOT / 'configs')) for p in paths]


def build_classifier(config: str):
    cfg = read_config(config)
    init_default_scope('mmpretrain')
    from mmpretrain.registry import MODELS
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model.eval()


def _rename(state, mapping):
    """Keys of ``state`` under a prefix of ``mapping`` renamed, the rest dropped."""
    out = OrderedDict()
    for key, value in state.items():
        prefix = next((p for p in mapping if key.startswith(p)), None)
        if prefix is not None:
            out[mapping[prefix] + key[len(prefix):]] = value
    return out


# Each case: the family's ImageNet config, and a function that returns (checkpoint dict in the official layout,
# reference forward) for a reference model with random weights.
def _repvit_release():
    ref = randomise_bn(build_reference('RepViT', 'm0.9'))
    trunk = RepViT('m0.9')
    official = trunk.to_official_state_dict(trunk.convert_checkpoint(ref.state_dict()))
    official.update(_rename(ref.state_dict(), {'head.head.bn.': 'classifier.classifier.bn.',
                                               'head.head.l.': 'classifier.classifier.l.',
                                               'head.head_dist.bn.': 'classifier.classifier_dist.bn.',
                                               'head.head_dist.l.': 'classifier.classifier_dist.l.'}))
    return {'model': official}, ref, ref.state_dict()


def _edgenext_release():
    ref = build_reference('EdgeNeXt', 'xx-small')
    with torch.no_grad():  # non-trivial final LayerNorm
        ref.head.norm.weight.uniform_(0.5, 1.5)
        ref.head.norm.bias.normal_(0, 0.1)
    trunk = EdgeNeXt('xx-small')
    official = trunk.to_official_state_dict(trunk.convert_checkpoint(ref.state_dict()))
    official.update(_rename(ref.state_dict(), {'head.norm.': 'norm.', 'head.fc.': 'head.'}))
    # the published accuracies are of model_ema: the training weights beside it must not be what is loaded
    training = OrderedDict((k, torch.zeros_like(v)) for k, v in official.items())
    return {'model': training, 'model_ema': official}, ref, ref.state_dict()


def _fastervit_release():
    ref = randomise_bn(build_reference('FasterViT', '0'))
    return {'state_dict': ref.state_dict()}, ref, None


def _transnext_release():
    trunk = TransNeXt('micro', img_size=224).eval()
    head = torch.nn.Linear(384, 1000)
    official = trunk.to_official_state_dict()
    official.update({'head.weight': head.weight.detach(), 'head.bias': head.bias.detach()})

    def reference(x):  # the official classifier: mean over the tokens after norm4, then the linear head
        return head(trunk(x)[-1].mean((2, 3)))
    return {'model': official}, reference, None


RELEASES = {
    'RepViT': ('configs/repvit/imagenet/repvit-m0.9_8xb256_in1k.py', _repvit_release, 'timm'),
    'EdgeNeXt': ('configs/edgenext/imagenet/edgenext-xx-small_8xb256-accu2_in1k.py', _edgenext_release, 'timm'),
    'FasterViT': ('configs/fastervit/imagenet/fastervit-0_32xb128_in1k.py', _fastervit_release, 'fastervit'),
    'TransNeXt': ('configs/transnext/imagenet/transnext-micro_8xb128_in1k.py', _transnext_release, 'official'),
}


@pytest.mark.parametrize('family', list(RELEASES))
def test_released_classifier_loads_strictly_and_gives_the_reference_logits(family):
    config, make_release, _ = RELEASES[family]
    checkpoint, reference, timm_state = make_release()
    model = build_classifier(config)
    load_model_weights(model, checkpoint, source=f'{family} release')
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference(x)
        logits = model(x, mode='tensor')
    assert logits.shape == (2, 1000)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
    if timm_state is not None:  # the same model in timm's layout
        timm_model = build_classifier(config)
        load_model_weights(timm_model, {'state_dict': timm_state}, source=f'{family} timm')
        with torch.no_grad():
            torch.testing.assert_close(timm_model(x, mode='tensor'), expected, rtol=1e-4, atol=1e-4)


def test_release_with_a_missing_head_tensor_is_an_error_naming_it():
    checkpoint, _, _ = _repvit_release()
    del checkpoint['model']['classifier.classifier_dist.l.bias']
    model = build_classifier(RELEASES['RepViT'][0])
    with pytest.raises(CheckpointError, match=r'missing keys: head\.classifier_dist\.fc\.bias'):
        load_model_weights(model, checkpoint, source='damaged release')


def test_backbone_only_checkpoint_does_not_fill_a_classifier():
    """A backbone file leaves the head random: refused, the missing head keys named."""
    model = build_classifier(RELEASES['TransNeXt'][0])
    backbone_only = TransNeXt('micro').to_official_state_dict()
    with pytest.raises(CheckpointError, match=r'head\.classifier\.fc\.weight'):
        load_model_weights(model, {'model': backbone_only}, source='backbone file')


def test_bn_hs_release_puts_the_final_norm_before_pooling():
    trunk = EdgeNeXt('small-bn-hs')
    official = trunk.to_official_state_dict()
    norm = randomise_bn(torch.nn.BatchNorm2d(304)).eval()
    fc = torch.nn.Linear(304, 1000)
    official.update({f'norm.{k}': v for k, v in norm.state_dict().items()})
    official.update({f'head.{k}': v for k, v in fc.state_dict().items()})
    model = build_classifier('configs/edgenext/imagenet/edgenext-small-bn-hs_8xb256-accu2_in1k.py')
    load_model_weights(model, {'model_ema': official}, source='bn_hs release')
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        trunk.load_state_dict(trunk.convert_checkpoint(official))
        expected = fc(norm(trunk.eval()(x)[-1]).mean((2, 3)))
        torch.testing.assert_close(model(x, mode='tensor'), expected, rtol=1e-4, atol=1e-5)


def test_distillation_head_averages_the_two_branches():
    from mmlightvit.heads import LightClsHead
    head = LightClsHead(num_classes=5, in_channels=8, branch_norm=True, distillation=True).eval()
    randomise_bn(head)
    head.init_weights()
    feats = (torch.randn(3, 8, 2, 2), )
    pooled = feats[-1].mean((2, 3))
    expected = (head.classifier.fc(head.classifier.norm(pooled)) + head.classifier_dist.fc(
        head.classifier_dist.norm(pooled))) / 2
    with torch.no_grad():
        torch.testing.assert_close(head(feats), expected)
    with pytest.raises(ValueError, match=r"pre_pool_norm must be one of \[None, 'BN'\]"):
        LightClsHead(num_classes=5, in_channels=8, pre_pool_norm='LN')


# ------------------------------------------------------------------------------------------------------ recipes
def _cfg(path):
    return read_config(path)


@pytest.mark.parametrize('path', PAPER_CONFIGS, ids=_ids(PAPER_CONFIGS))
def test_imagenet_config_names_its_release(path):
    header = ''.join(line[1:] for line in path.read_text().splitlines(True) if line.startswith('#'))
    assert re.search(r'Released:\s+https://\S+\.pth', header), path


def test_recipes_follow_the_papers():
    repvit = _cfg('configs/repvit/imagenet/repvit-m1.1_8xb256_in1k.py')
    assert repvit.optim_wrapper.optimizer.lr == pytest.approx(4e-3)
    assert repvit.optim_wrapper.optimizer.weight_decay == 0.025
    assert repvit.train_dataloader.sampler.type == 'RepeatAugSampler'
    assert repvit.train_cfg.max_epochs == 300
    assert _cfg('configs/repvit/imagenet/repvit-m1.1_8xb256-450e_in1k.py').train_cfg.max_epochs == 450
    assert _cfg('configs/repvit/imagenet/repvit-m2.3_8xb128_in1k.py').optim_wrapper.optimizer.lr == pytest.approx(2e-3)

    edgenext = _cfg('configs/edgenext/imagenet/edgenext-small_8xb256-accu2_in1k.py')
    assert edgenext.optim_wrapper.accumulative_counts == 2 and edgenext.optim_wrapper.optimizer.lr == 6e-3
    assert edgenext.custom_hooks[0].type == 'EMAHook' and edgenext.custom_hooks[0].momentum == pytest.approx(5e-4)
    assert edgenext.test_dataloader.dataset.pipeline[1].scale == 292
    assert not edgenext.model.train_cfg  # no Mixup / CutMix
    xxs = _cfg('configs/edgenext/imagenet/edgenext-xx-small_8xb256-accu2_in1k.py')
    assert [t.type for t in xxs.train_dataloader.dataset.pipeline][3] == 'ColorJitter'
    assert xxs.model.backbone.drop_path_rate == 0
    assert _cfg('configs/edgenext/imagenet/edgenext-small-usi_8xb256-accu2_in1k.py'
                ).test_dataloader.dataset.pipeline[1].scale == 269

    fastervit = _cfg('configs/fastervit/imagenet/fastervit-0_32xb128_in1k.py')
    assert fastervit.train_cfg.max_epochs == 320 and fastervit.param_scheduler[1].end == 310
    assert _cfg('configs/fastervit/imagenet/fastervit-4_32xb128_in1k.py').optim_wrapper.optimizer.type == 'Lamb'

    transnext = _cfg('configs/transnext/imagenet/transnext-small_8xb128_in1k.py')
    assert transnext.model.backbone.drop_path_rate == 0.45
    assert set(transnext.optim_wrapper.paramwise_cfg.custom_keys) == {
        'query_embedding', 'relative_pos_bias_local', 'cpb', 'temperature'}
    ft = _cfg('configs/transnext/imagenet/transnext-base-384px_8xb128_in1k.py')
    assert ft.model.backbone.img_size == 384 and ft.model.backbone.pretrain_size == 224
    assert ft.load_from.endswith('transnext_base_224_1k.pth')


@pytest.mark.parametrize('config, paper_params', [
    ('configs/fastervit/imagenet/fastervit-0_32xb128_in1k.py', 31.4),
    ('configs/transnext/imagenet/transnext-micro_8xb128_in1k.py', 12.8),
    ('configs/transnext/imagenet/transnext-small_8xb128_in1k.py', 49.7),  # Tiny: 28.26M here, 28.2M printed
    ('configs/edgenext/imagenet/edgenext-small_8xb256-accu2_in1k.py', 5.59),
    ('configs/edgenext/imagenet/edgenext-xx-small_8xb256-accu2_in1k.py', 1.33),
])
def test_classifier_params_match_the_papers(config, paper_params):
    params = sum(p.numel() for p in build_classifier(config).parameters()) / 1e6
    digits = len(str(paper_params).split('.')[1])
    assert round(params, digits) == paper_params, params


# ------------------------------------------------------------------------------------------------- runs
@pytest.mark.parametrize('path', DEMO_CONFIGS, ids=_ids(DEMO_CONFIGS))
def test_demo_classifier_trains_and_evaluates(path, tmp_path):
    """Two iterations on the demo set, then the checkpoint evaluates on 8 validation images."""
    work = tmp_path / 'work'
    run_output(['tools/train.py', str(path), '--work-dir', str(work), '--cfg-options', 'train_cfg.max_epochs=1',
                'train_dataloader.batch_size=4', 'train_dataloader.dataset.indices=8', 'val_cfg=None',
                'val_dataloader=None', 'val_evaluator=None', 'default_hooks.checkpoint.interval=1',
                *[f'train_dataloader.{o}' for o in NO_WORKERS]], timeout=900)
    out = run_output(['tools/test.py', str(path), str(work / 'epoch_1.pth'), '--work-dir', str(work),
                      '--cfg-options', 'test_dataloader.dataset.indices=8',
                      *[f'test_dataloader.{o}' for o in NO_WORKERS]], timeout=900)
    assert re.search(r'accuracy/top1: \d', out), out[-2000:]


def test_tools_test_evaluates_an_official_release_with_the_imagenet_config(tmp_path):
    """``tools/test.py <ImageNet config> <release>``: the official RepViT file is converted in memory and loaded
    strictly (here evaluated on the demo images, with the config's own ImageNet test pipeline)."""
    checkpoint, _, _ = _repvit_release()
    release = tmp_path / 'repvit_m0_9_distill_450e.pth'
    torch.save(checkpoint, release)
    # the demo images under the release's 1000 class names (the heads' class count must match the data's)
    config = tmp_path / 'release_on_demo_images.py'
    config.write_text(f'_base_ = {str(ROOT / RELEASES["RepViT"][0])!r}\n'
                      "test_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False, dataset=dict(\n"
                      "    type='mmlightvit.DemoImageNetDataset', data_root='data/demo/imagenet', indices=4,\n"
                      "    metainfo=dict(classes=[f'class {i}' for i in range(1000)])))\n")
    out = run_output(['tools/test.py', str(config), str(release), '--work-dir', str(tmp_path / 'work')], timeout=900)
    assert 'official RepViT layout; converted in memory' in out
    assert re.search(r'accuracy/top1: \d', out), out[-2000:]
