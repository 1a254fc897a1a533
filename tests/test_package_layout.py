"""The package's floors: lower ones never import higher ones, and tools import no other tool."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / 'mmlightvit'
# what each part may not import (the models are importable with torch and mmengine alone)
FORBIDDEN = {
    'utils': ('mmlightvit.models', 'mmlightvit.analysis', 'mmlightvit.apis', 'mmlightvit.engine',
              'mmlightvit.deploy', 'mmlightvit.datasets'),
    'models': ('mmlightvit.analysis', 'mmlightvit.apis', 'mmlightvit.engine', 'mmlightvit.deploy',
               'mmlightvit.datasets', 'mmdet', 'mmseg', 'mmcv', 'mmpretrain', 'tools'),
    'models/layers': ('mmlightvit.models.backbones', ),
    'datasets': ('mmlightvit.models', 'mmlightvit.analysis', 'mmlightvit.apis'),
    'heads': ('mmlightvit.models', 'mmlightvit.analysis', 'mmlightvit.apis', 'mmlightvit.engine', 'mmlightvit.deploy',
              'mmlightvit.datasets', 'tools'),
}


def imported_modules(path: Path):
    tree = ast.parse(path.read_text())
    package = '.'.join(path.relative_to(ROOT).parent.parts)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = package.rsplit('.', node.level - 1)[0] if node.level > 1 else package
                yield f'{base}.{node.module}' if node.module else base
            else:
                yield node.module


@pytest.mark.parametrize('part', sorted(FORBIDDEN))
def test_no_import_runs_back_up(part):
    offending = [f'{path.relative_to(ROOT)} imports {name}' for path in sorted((PACKAGE / part).rglob('*.py'))
                 for name in imported_modules(path)
                 if name and name.startswith(FORBIDDEN[part])]
    assert not offending, offending


def test_tools_import_no_other_tool_and_edit_no_sys_path():
    for path in sorted((ROOT / 'tools').rglob('*.py')):
        text = path.read_text()
        assert 'sys.path' not in text, path
        assert not any(name and name.startswith('tools') for name in imported_modules(path)), path
