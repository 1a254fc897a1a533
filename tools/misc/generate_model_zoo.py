"""Rewrite the model-zoo tables of the family READMEs (``configs/<family>/README.md``) from their metafiles
(``configs/<family>/metafile.yml``).

    python tools/misc/generate_model_zoo.py          # rewrite the tables in configs/<family>/README.md
    python tools/misc/generate_model_zoo.py --check  # exit 1, naming the stale files and tables, if any is out of date

Each family's table sits between two marker comments in its README, which must already be there:

    <!-- model-zoo:repvit:start -->
    ...generated, do not edit by hand...
    <!-- model-zoo:repvit:end -->

Only the text between the markers is rewritten; the rest of the README is left as it is. Links in the tables are
relative to the family's folder. The metafile format (which keys exist and what they mean) is described at the top
of every metafile.
"""
import argparse
import difflib
import os
import sys
from pathlib import Path
from typing import Dict, List

import yaml

ROOT = Path(__file__).resolve().parents[2]

TASK_NAMES = {
    'Object Detection': 'detection',
    'Instance Segmentation': 'instance seg.',
    'Semantic Segmentation': 'semantic seg.',
    'Image Classification': 'classification',
}
COLUMNS = ['config', 'task', 'data', 'schedule', 'params', 'FLOPs (input H x W)', 'paper result', 'reproduce',
           'recipe / notes', 'pretrained backbone']


def start_marker(family: str) -> str:
    return f'<!-- model-zoo:{family}:start -->'


def end_marker(family: str) -> str:
    return f'<!-- model-zoo:{family}:end -->'


def readme_path(family: str, root: Path = ROOT) -> Path:
    """Where a family's model-zoo table lives: ``configs/<family>/README.md``."""
    return root / 'configs' / family / 'README.md'


def load_readmes(families, root: Path = ROOT) -> Dict[str, str]:
    """{family: text of configs/<family>/README.md}; a missing README is an error naming it."""
    readmes = {}
    for family in families:
        path = readme_path(family, root)
        if not path.is_file():
            raise ValueError(f'{path.relative_to(root)} is missing: every family with a metafile needs a README '
                             f'with the {start_marker(family)} and {end_marker(family)} markers')
        readmes[family] = path.read_text(encoding='utf-8')
    return readmes


def load_metafiles(root: Path = ROOT) -> Dict[str, dict]:
    """{family folder name: parsed metafile}, for every ``configs/<family>/metafile.yml``."""
    metafiles = {}
    for path in sorted((root / 'configs').glob('*/metafile.yml')):
        with open(path, encoding='utf-8') as f:
            metafiles[path.parent.name] = yaml.safe_load(f)
    return metafiles


def _number(value) -> str:
    # 186.5 -> '186.5', 2279.0 -> '2279': as precise as the metafile stores it, no trailing '.0'
    return f'{value:g}'


def _schedule(metadata: dict) -> str:
    if 'Epochs' in metadata:
        return f"{metadata['Epochs']} epochs"
    iterations = metadata['Iterations']
    return f'{iterations // 1000}k iters' if iterations % 1000 == 0 else f'{iterations} iters'


def _params(metadata: dict) -> str:
    if 'Parameters (M)' not in metadata:
        return 'not measured'
    text = f"{metadata['Parameters (M)']:.2f}M"
    if 'Parameters with Auxiliary Head (M)' in metadata:
        text += f" ({metadata['Parameters with Auxiliary Head (M)']:.2f}M with aux. head)"
    return text


def _flops(metadata: dict) -> str:
    if 'FLOPs (G)' not in metadata:
        return 'not measured'
    return f"{_number(metadata['FLOPs (G)'])}G ({metadata['Input Shape']})"


def _metric(value: float) -> str:
    # AP and mIoU are reported with one decimal: keep it ('53.0', not '53'), and a second one where a source gives
    # it ('55.16')
    return f'{value:.1f}' if round(value, 1) == value else f'{value:g}'


def _paper_result(model: dict) -> str:
    metadata = model['Metadata']
    if 'Results' not in model:
        return '-' if 'Ablation of' in metadata or 'Demo of' in metadata else 'not reported'
    text = ', '.join(f'{name} {_metric(value)}'
                     for result in model['Results'] for name, value in result['Metrics'].items())
    paper_cost = []
    if 'Paper Parameters (M)' in metadata:
        paper_cost.append(f"{_number(metadata['Paper Parameters (M)'])}M params")
    if 'Paper FLOPs (G)' in metadata:
        paper_cost.append(f"{_number(metadata['Paper FLOPs (G)'])} GFLOPs")
    return f"{text} ({', '.join(paper_cost)})" if paper_cost else text


def _command(model: dict) -> str:
    """The command that reproduces the row's paper result: evaluating the released model, or training first."""
    if 'Results' not in model:
        return '-'
    config, options = model['Config'], model['Metadata'].get('Test Options')
    suffix = f' {options}' if options else ''
    if 'Weights' in model:
        command = f"`python tools/test.py {config} {model['Weights']}{suffix}`"
    else:
        command = (f'`bash tools/dist_train.sh {config} 8`, then `python tools/test.py {config} '
                   f'work_dirs/{model["Name"]}/CHECKPOINT{suffix}`')
    ms_metrics = [name for result in model['Results'] for name in result['Metrics'] if '(ms' in name]
    if ms_metrics and not options:
        command += f" (add `--tta` for {', '.join(ms_metrics)})"
    return command


def _notes(metadata: dict) -> str:
    if 'Ablation of' in metadata:
        return f"ablation of `{metadata['Ablation of']}`: {metadata['Change']}"
    if 'Demo of' in metadata:
        return f"demo of `{metadata['Demo of']}`"
    return metadata['Recipe']


def _pretrained(metadata: dict) -> str:
    url = metadata.get('Pretrained Backbone')
    return f"[{url.rsplit('/', 1)[-1]}]({url})" if url else 'from scratch'


def _link_target(family: str, path: str) -> str:
    """A repository path (``configs/repvit/ablations/x.py``) as a link from ``configs/<family>/README.md``."""
    return Path(os.path.relpath(path, f'configs/{family}')).as_posix()


def model_row(model: dict, family: str) -> List[str]:
    metadata = model['Metadata']
    return [
        f"[{model['Name']}]({_link_target(family, model['Config'])})",
        ' + '.join(TASK_NAMES[task] for task in metadata['Tasks']),
        metadata['Training Data'],
        _schedule(metadata),
        _params(metadata),
        _flops(metadata),
        _paper_result(model),
        _command(model),
        _notes(metadata),
        _pretrained(metadata),
    ]


def render_table(family: str, metafile: dict) -> str:
    """The generated block of one family: its table and one line saying where the numbers come from."""
    lines = ['| ' + ' | '.join(COLUMNS) + ' |', '| ' + ' | '.join(['---'] * len(COLUMNS)) + ' |']
    lines += ['| ' + ' | '.join(model_row(model, family)) + ' |' for model in metafile['Models']]
    lines += [
        '',
        'Generated from [`metafile.yml`](metafile.yml) by',
        '[`tools/misc/generate_model_zoo.py`](../../tools/misc/generate_model_zoo.py). Params and FLOPs (MACs) '
        'measured',
        'with [`tools/analysis/get_flops.py`](../../tools/analysis/get_flops.py) in the papers\' conventions: '
        'detectors at',
        '800x1280 with the mask heads on the first 100 RoIs (every stage of a Cascade too), UperNet at 512x2048,',
        'segmentors without their auxiliary head (with it in brackets, as the papers\' UperNet tables count),',
        'classifiers at their test crop, unfused and with every head they train (a paper may count a fused model with',
        'one head: its own figures are in brackets); paper results as the paper reports them, not reproduced here',
        '(no GPU or COCO / ADE20K / ImageNet on the machines this project is tested on); "reproduce" gives the command',
        'that measures each (run from the repository root), from the released model where there is one.',
    ]
    return '\n'.join(lines)


def replace_block(readme: str, family: str, block: str) -> str:
    start, end = start_marker(family), end_marker(family)
    if readme.count(start) != 1 or readme.count(end) != 1:
        raise ValueError(f'configs/{family}/README.md needs exactly one {start} and one {end} marker '
                         f'(family {family!r})')
    head, rest = readme.split(start)
    _, tail = rest.split(end)
    return f'{head}{start}\n{block}\n{end}{tail}'


def generated_readme(readme: str, family: str, metafile: dict) -> str:
    """A family README with its model-zoo table regenerated from its metafile."""
    return replace_block(readme, family, render_table(family, metafile))


def generated_readmes(readmes: Dict[str, str], metafiles: Dict[str, dict]) -> Dict[str, str]:
    """{family: its README with the table regenerated}, for every family with a metafile."""
    return {family: generated_readme(readmes[family], family, metafile) for family, metafile in metafiles.items()}


def stale_families(readmes: Dict[str, str], metafiles: Dict[str, dict]) -> List[str]:
    """Families whose README table (``readmes[family]``) differs from what their metafile generates."""
    return [family for family, readme in generated_readmes(readmes, metafiles).items() if readme != readmes[family]]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--check', action='store_true',
                        help='do not write; exit 1 if a family README is out of date')
    parser.add_argument('--root', type=Path, default=ROOT,
                        help='repository root holding configs/<family>/ (default: this repository)')
    args = parser.parse_args(argv)

    root = args.root.resolve()
    metafiles = load_metafiles(root)
    try:
        readmes = load_readmes(metafiles, root)
        updated = generated_readmes(readmes, metafiles)
    except ValueError as error:  # a missing README, or missing or doubled markers
        print(error, file=sys.stderr)
        return 1
    stale = [family for family in metafiles if updated[family] != readmes[family]]
    names = {family: str(readme_path(family, root).relative_to(root)) for family in metafiles}
    if not args.check:
        for family in stale:
            readme_path(family, root).write_text(updated[family], encoding='utf-8')
        print(f'model-zoo tables up to date in {", ".join(names.values())}'
              + (f' (rewrote {", ".join(names[family] for family in stale)})' if stale else ''))
        return 0

    if not stale:
        print(f'model-zoo tables up to date in {", ".join(names.values())}')
        return 0
    for family in stale:
        diff = difflib.unified_diff(readmes[family].splitlines(), updated[family].splitlines(), names[family],
                                    'generated', lineterm='', n=0)
        print('\n'.join(diff))
    print(f'model-zoo table out of date in {", ".join(names[family] for family in stale)} '
          '(the metafile changed, or the table was edited by hand); run python tools/misc/generate_model_zoo.py',
          file=sys.stderr)
    return 1


if __name__ == '__main__':
    sys.exit(main())
