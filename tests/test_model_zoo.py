"""The metafiles (configs/<family>/metafile.yml) cover every shipped config, and the family READMEs' model-zoo
tables (configs/<family>/README.md) are the ones tools/misc/generate_model_zoo.py generates from them; a few stored
parameter counts are recounted; the relative links of the documentation resolve."""
import copy
import importlib.util
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml
from mmengine.registry import MODELS, init_default_scope

from tests.conftest import read_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (ROOT / 'configs').rglob('*.py') if '_base_' not in p.parts)


def _load_generator():
    # tools/ is not a package: load the script as a module
    spec = importlib.util.spec_from_file_location('generate_model_zoo', ROOT / 'tools/misc/generate_model_zoo.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generator = _load_generator()
METAFILES = generator.load_metafiles(ROOT)
MODELS_BY_NAME = {model['Name']: model for metafile in METAFILES.values() for model in metafile['Models']}


def _all_models():
    return [(family, model) for family, metafile in METAFILES.items() for model in metafile['Models']]


def test_every_family_has_a_metafile():
    families = sorted({p.relative_to(ROOT / 'configs').parts[0] for p in CONFIGS})
    assert sorted(METAFILES) == families


def test_model_index_imports_every_metafile():
    # model-index.yml is what OpenMMLab's tooling (mim) reads to find the metafiles
    with open(ROOT / 'model-index.yml', encoding='utf-8') as f:
        imported = yaml.safe_load(f)['Import']
    assert sorted(imported) == sorted(f'configs/{family}/metafile.yml' for family in METAFILES)


def test_every_config_is_in_exactly_one_metafile():
    listed = Counter(model['Config'] for _, model in _all_models())
    shipped = {str(p.relative_to(ROOT)) for p in CONFIGS}
    assert sorted(shipped - set(listed)) == [], 'configs missing from the metafiles'
    assert sorted(set(listed) - shipped) == [], 'metafile entries without a config file'
    assert [path for path, count in listed.items() if count > 1] == [], 'configs listed more than once'


def test_metafile_entries_are_well_formed():
    names = Counter(model['Name'] for _, model in _all_models())
    assert [name for name, count in names.items() if count > 1] == [], 'duplicate model names'
    for family, metafile in METAFILES.items():
        collections = {collection['Name'] for collection in metafile['Collections']}
        for collection in metafile['Collections']:
            assert collection['Paper']['URL'].startswith('https://') and collection['Paper']['Title']
            assert collection['Code']['URL'].startswith('https://github.com/')
        for model in metafile['Models']:
            config, metadata = Path(model['Config']), model['Metadata']
            assert (ROOT / config).is_file(), config
            assert config.parts[:2] == ('configs', family), f'{config} listed in the {family} metafile'
            assert model['Name'] == config.stem, config
            assert model['In Collection'] in collections, config
            assert ('Epochs' in metadata) != ('Iterations' in metadata), config
            # FLOPs go with the input they were measured at, and with the parameter count
            assert ('FLOPs (G)' in metadata) == ('Input Shape' in metadata), config
            assert 'FLOPs (G)' not in metadata or 'Parameters (M)' in metadata, config
            for result in model.get('Results', []):
                assert result['Task'] in metadata['Tasks'] and result['Metrics'], config
            for key in ('Ablation of', 'Demo of'):
                if key in metadata:
                    assert metadata[key] in MODELS_BY_NAME, f'{config}: {key} {metadata[key]} is not a model'
            if 'ablations' in config.parts:
                assert 'Ablation of' in metadata and metadata.get('Change') and 'Results' not in model, config
            elif config.stem.endswith('-demo'):
                assert 'Demo of' in metadata and 'Results' not in model, config
            else:
                assert metadata.get('Recipe'), config


def test_readme_tables_are_up_to_date():
    readmes = generator.load_readmes(METAFILES, ROOT)
    stale = generator.stale_families(readmes, METAFILES)
    assert stale == [], f'run python tools/misc/generate_model_zoo.py (out of date: {stale})'


def test_metafiles_point_at_their_family_readme():
    for family, metafile in METAFILES.items():
        for collection in metafile['Collections']:
            assert collection['README'] == f'configs/{family}/README.md', family
            assert (ROOT / collection['README']).is_file()


def test_check_reports_the_stale_family():
    readmes = generator.load_readmes(METAFILES, ROOT)
    changed = copy.deepcopy(METAFILES)
    changed['edgenext']['Models'][0]['Metadata']['Parameters (M)'] += 1
    assert generator.stale_families(readmes, changed) == ['edgenext']
    # a hand edit inside one table is caught too
    edited = dict(readmes, repvit=readmes['repvit'].replace('| [fpn_repvit-m1.5', '| [fpn_repvit-m1.50', 1))
    assert edited['repvit'] != readmes['repvit'] and generator.stale_families(edited, METAFILES) == ['repvit']
    without_markers = dict(readmes, fastervit=readmes['fastervit'].replace(generator.start_marker('fastervit'), ''))
    with pytest.raises(ValueError, match='fastervit'):
        generator.stale_families(without_markers, METAFILES)


def _copy_docs(tmp_path):
    for family in METAFILES:
        (tmp_path / 'configs' / family).mkdir(parents=True)
        for name in ('metafile.yml', 'README.md'):
            shutil.copy(ROOT / 'configs' / family / name, tmp_path / 'configs' / family / name)


def test_check_command_names_the_stale_file(tmp_path, capsys):
    _copy_docs(tmp_path)
    assert generator.main(['--check', '--root', str(tmp_path)]) == 0
    readme = tmp_path / 'configs/transnext/README.md'
    original = readme.read_text(encoding='utf-8')
    readme.write_text(original.replace('| [mask-rcnn_transnext-tiny_coco]', '| [mask-rcnn_transnext-tiny]', 1),
                      encoding='utf-8')
    capsys.readouterr()
    assert generator.main(['--check', '--root', str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert 'configs/transnext/README.md' in err and 'configs/repvit/README.md' not in err
    # without --check the table is rewritten, and only the generated block changes
    assert generator.main(['--root', str(tmp_path)]) == 0
    assert readme.read_text(encoding='utf-8') == original
    assert generator.main(['--check', '--root', str(tmp_path)]) == 0
    # a family README without markers (or without a README at all) is an error naming it
    (tmp_path / 'configs/edgenext/README.md').unlink()
    assert generator.main(['--check', '--root', str(tmp_path)]) == 1
    assert 'configs/edgenext/README.md' in capsys.readouterr().err


def test_table_links_are_relative_to_the_family_readme():
    for family, metafile in METAFILES.items():
        table = generator.render_table(family, metafile)
        for model in metafile['Models']:
            target = generator._link_target(family, model['Config'])
            assert f"[{model['Name']}]({target})" in table
            assert (ROOT / 'configs' / family / target).resolve() == (ROOT / model['Config']).resolve()


def test_readme_summary_names_every_family_and_head():
    """The hand-written summary table of README.md: one row per family, linking its README and naming its heads."""
    readme = (ROOT / 'README.md').read_text(encoding='utf-8')
    for family, metafile in METAFILES.items():
        rows = [line for line in readme.splitlines()
                if line.startswith('|') and f'(configs/{family}/README.md)' in line]
        assert len(rows) == 1, f'README.md: no summary row links configs/{family}/README.md'
        heads = {model['Metadata']['Architecture'][0] for model in metafile['Models']
                 if 'Ablation of' not in model['Metadata'] and 'Demo of' not in model['Metadata']}
        for head in heads:
            assert head in rows[0], f'README.md summary row of {family} does not name {head}'


DOCS = ['README.md', 'tools/README.md'] + [f'configs/{family}/README.md' for family in METAFILES]
LINK = re.compile(r'\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)\)')


def _anchors(markdown: str):
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r'```.*?```', '', markdown, flags=re.S)
    return {re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')
            for heading in re.findall(r'^#+ (.+)$', text, flags=re.M)}


@pytest.mark.parametrize('doc', DOCS)
def test_relative_links_resolve(doc):
    markdown = (ROOT / doc).read_text(encoding='utf-8')
    broken = []
    for target in LINK.findall(re.sub(r'```.*?```', '', markdown, flags=re.S)):
        if re.match(r'[a-z]+://', target):
            continue
        path, _, anchor = target.partition('#')
        resolved = (ROOT / doc).parent / path if path else ROOT / doc
        if not resolved.exists():
            broken.append(target)
        elif anchor and resolved.suffix == '.md' and anchor not in _anchors(resolved.read_text(encoding='utf-8')):
            broken.append(target)
    assert broken == [], f'{doc}: links that do not resolve: {broken}'


@pytest.mark.parametrize('name', [
    'fpn_repvit-m1.1_ade20k-512x512-40k',
    'mask-rcnn_repvit-m0.9_coco',
    'fpn_edgenext-xx-small_ade20k-512x512-40k',
    'upernet_edgenext-small_ade20k-512x512-160k',  # the auxiliary head must not be counted
])
def test_stored_numbers_match_the_config(name):
    model_entry = MODELS_BY_NAME[name]
    metadata = model_entry['Metadata']
    cfg = read_config(model_entry['Config'])

    schedule = 'Epochs' if 'Epochs' in metadata else 'Iterations'
    assert metadata[schedule] == cfg.train_cfg['max_epochs' if schedule == 'Epochs' else 'max_iters']
    init_cfg = cfg.model.backbone.get('init_cfg') or {}
    assert metadata.get('Pretrained Backbone') == init_cfg.get('checkpoint')

    cfg.model.backbone.init_cfg = None  # no download: the weights do not change the count
    init_default_scope(cfg.default_scope)
    model = MODELS.build(cfg.model)
    if getattr(model, 'auxiliary_head', None) is not None:
        with_aux = sum(p.numel() for p in model.parameters())
        assert round(with_aux / 1e6, 2) == metadata['Parameters with Auxiliary Head (M)'], with_aux
        model.auxiliary_head = None  # tools/analysis/get_flops.py counts segmentors without it
    params = sum(p.numel() for p in model.parameters())
    assert round(params / 1e6, 2) == metadata['Parameters (M)'], params


def test_every_paper_result_has_a_command():
    """Released rows evaluate the release (with --tta where the result is multi-scale); the others train first."""
    _command = generator._command
    released = [model for _, model in _all_models() if 'Weights' in model]
    # RepViT 3 Mask R-CNN + 3 FPN; TransNeXt 3 Mask R-CNN + 3 UperNet (ss, ms, extra) + 3 Mask2Former + 4 DINO;
    # FasterViT 1 DINO; ImageNet classifiers: RepViT 5 x (300e, 450e), EdgeNeXt 9, FasterViT 7 + 3 (21K),
    # TransNeXt 4 + 2 (384)
    assert len(released) == 6 + 6 + 6 + 3 + 4 + 1 + 10 + 9 + 10 + 6
    for model in released:
        assert model['Weights'].startswith('https://') and 'Results' in model, model['Name']
        assert _command(model).startswith(f"`python tools/test.py {model['Config']} {model['Weights']}")
    for _, model in _all_models():
        if '_ms' in model['Name']:
            assert model['Metadata']['Test Options'] == '--tta' and _command(model).endswith(' --tta`')
        if 'Results' in model and 'Weights' not in model:
            assert 'tools/dist_train.sh' in _command(model), model['Name']
