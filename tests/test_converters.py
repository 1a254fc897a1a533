"""The family checkpoint declarations and the one converter tool that reads them (tools/model_converters/
to_mmlightvit.py), for every family. Layout-specific conversions (official, timm, mmpretrain files) are tested with
each family's faithfulness tests."""
import pytest
import torch

from mmlightvit.models.backbones import FAMILIES
from mmlightvit.utils import load_checkpoint_file
from tests.backbone_utils import converter_main
SMALL = {'RepViT': 'm0.9', 'EdgeNeXt': 'xx-small', 'FasterViT': '0', 'TransNeXt': 'micro'}
OTHER = {'RepViT': 'm1.1', 'EdgeNeXt': 'small', 'FasterViT': '1', 'TransNeXt': 'tiny'}


@pytest.mark.parametrize('family', FAMILIES, ids=lambda cls: cls.__name__)
def test_every_variant_is_read_back_from_its_own_weights(family):
    """infer_arch and arch_signature agree for every named variant (built on the meta device: shapes only)."""
    for name in family.arch_settings:
        with torch.device('meta'):
            state = family(arch=name).state_dict()
        found = family.infer_arch(state)
        assert family.matching_arch(found) == name, (name, found)
        assert family.detect_layout(state) == 'mmlightvit'


@pytest.mark.parametrize('family', FAMILIES, ids=lambda cls: cls.__name__)
def test_converter_finds_family_and_arch_of_a_whole_model(family, tmp_path):
    main = converter_main()
    torch.manual_seed(0)
    backbone = family(arch=SMALL[family.__name__])
    detector = {f'backbone.{k}': v for k, v in backbone.state_dict().items()}
    detector['neck.lateral_convs.0.conv.weight'] = torch.zeros(8, 8, 1, 1)  # a detector's other parts are left out
    torch.save({'state_dict': detector, 'meta': {}}, tmp_path / 'detector.pth')

    summary = main([str(tmp_path / 'detector.pth'), str(tmp_path / 'out.pth'), '--prefix', 'backbone.'])
    assert (summary['family'], summary['arch']) == (family.__name__, SMALL[family.__name__])
    saved = load_checkpoint_file(str(tmp_path / 'out.pth'))
    assert saved['meta']['family'] == family.__name__ and saved['meta']['arch'] == SMALL[family.__name__]
    for key, value in backbone.state_dict().items():
        assert torch.equal(saved['state_dict'][f'backbone.{key}'], value), key

    with pytest.raises(SystemExit, match=f'not --arch {OTHER[family.__name__]}'):
        main([str(tmp_path / 'detector.pth'), str(tmp_path / 'x.pth'), '--arch', OTHER[family.__name__]])
    other = next(cls for cls in FAMILIES if cls is not family)
    with pytest.raises((SystemExit, KeyError, ValueError)):  # another family cannot read these weights
        main([str(tmp_path / 'detector.pth'), str(tmp_path / 'x.pth'), '--family', other.__name__])


def test_converter_names_the_families_when_none_fits(tmp_path):
    torch.save({'state_dict': {'conv.weight': torch.zeros(4, 3, 3, 3)}}, tmp_path / 'foreign.pth')
    with pytest.raises(SystemExit, match='no family of RepViT, EdgeNeXt, FasterViT, TransNeXt read these weights; '
                                         'name it with --family'):
        converter_main()([str(tmp_path / 'foreign.pth'), str(tmp_path / 'out.pth')])
