"""Rewrite the model-zoo tables of README.md from the metafiles (``configs/<family>/metafile.yml``).

    python tools/misc/generate_model_zoo.py          # rewrite the tables in README.md
    python tools/misc/generate_model_zoo.py --check  # exit 1, naming the stale tables, if README.md is out of date

Each family's table sits between two marker comments in README.md, which must already be there:

    <!-- model-zoo:repvit:start -->
    ...generated, do not edit by hand...
    <!-- model-zoo:repvit:end -->

Only the text between the markers is rewritten; the rest of README.md is left as it is. The metafile format (which
keys exist and what they mean) is described at the top of every metafile.
"""
import argparse
import difflib
import sys
from pathlib import Path
from typing import Dict, List

import yaml

ROOT = Path(__file__).resolve().parents[2]

TASK_NAMES = {
    'Object Detection': 'detection',
    'Instance Segmentation': 'instance seg.',
    'Semantic Segmentation': 'semantic seg.',
}
COLUMNS = ['config', 'task', 'data', 'schedule', 'params', 'FLOPs (input H x W)', 'paper result', 'reproduce',
           'recipe / notes', 'pretrained backbone']


def start_marker(family: str) -> str:
    return f'<!-- model-zoo:{family}:start -->'


def end_marker(family: str) -> str:
    return f'<!-- model-zoo:{family}:end -->'


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


def _paper_result(model: dict) -> str:
    metadata = model['Metadata']
    if 'Results' not in model:
        return '-' if 'Ablation of' in metadata or 'Demo of' in metadata else 'not reported'
    # AP and mIoU are reported with one decimal: keep it ('53.0', not '53')
    text = ', '.join(f'{name} {value:.1f}' for result in model['Results'] for name, value in result['Metrics'].items())
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


def model_row(model: dict) -> List[str]:
    metadata = model['Metadata']
    return [
        f"[{model['Name']}]({model['Config']})",
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
    lines += ['| ' + ' | '.join(model_row(model)) + ' |' for model in metafile['Models']]
    lines += [
        '',
        f'Generated from `configs/{family}/metafile.yml` by `tools/misc/generate_model_zoo.py`. Params and FLOPs',
        '(MACs) measured with `tools/analysis/get_flops.py` in the papers\' conventions: detectors at 800x1280 with',
        'the mask heads on the first 100 RoIs (every stage of a Cascade too), UperNet at 512x2048, segmentors',
        'without their auxiliary head (with it in brackets, as the papers\' UperNet tables count); paper results',
        'as the paper reports them, not reproduced here (no GPU or COCO / ADE20K on the machines this project is',
        'tested on); "reproduce" gives the command that measures each, from the released model where there is one.',
    ]
    return '\n'.join(lines)


def replace_block(readme: str, family: str, block: str) -> str:
    start, end = start_marker(family), end_marker(family)
    if readme.count(start) != 1 or readme.count(end) != 1:
        raise ValueError(f'README.md needs exactly one {start} and one {end} marker (family {family!r})')
    head, rest = readme.split(start)
    _, tail = rest.split(end)
    return f'{head}{start}\n{block}\n{end}{tail}'


def generated_readme(readme: str, metafiles: Dict[str, dict]) -> str:
    for family, metafile in metafiles.items():
        readme = replace_block(readme, family, render_table(family, metafile))
    return readme


def stale_families(readme: str, metafiles: Dict[str, dict]) -> List[str]:
    """Families whose README table differs from what their metafile generates."""
    return [family for family, metafile in metafiles.items()
            if replace_block(readme, family, render_table(family, metafile)) != readme]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--check', action='store_true', help='do not write; exit 1 if README.md is out of date')
    parser.add_argument('--readme', type=Path, default=ROOT / 'README.md', help='default: the repository README')
    args = parser.parse_args(argv)

    readme = args.readme.read_text(encoding='utf-8')
    metafiles = load_metafiles()
    try:
        updated = generated_readme(readme, metafiles)
    except ValueError as error:  # missing or doubled markers
        print(f'{args.readme}: {error}', file=sys.stderr)
        return 1
    if not args.check:
        if updated != readme:
            args.readme.write_text(updated, encoding='utf-8')
        print(f'{args.readme}: model-zoo tables of {", ".join(metafiles)} up to date')
        return 0

    stale = stale_families(readme, metafiles)
    if not stale:
        print(f'{args.readme}: model-zoo tables up to date')
        return 0
    diff = difflib.unified_diff(readme.splitlines(), updated.splitlines(), 'README.md', 'generated', lineterm='', n=0)
    print('\n'.join(diff))
    print(f'{args.readme}: model-zoo table out of date for {", ".join(stale)} '
          '(the metafile changed, or the table was edited by hand); run python tools/misc/generate_model_zoo.py',
          file=sys.stderr)
    return 1


if __name__ == '__main__':
    sys.exit(main())
