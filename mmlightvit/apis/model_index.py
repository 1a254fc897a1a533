"""The model zoo as the metafiles describe it: names, configs and released weights (OpenMMLab's model-index)."""
import os.path as osp
from dataclasses import dataclass
from typing import Dict, List, Optional

import yaml

PACKAGE_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# mmlightvit/.mim holds configs/ and model-index.yml (links in a checkout, copies in a wheel), as mim expects.
MIM_ROOT = osp.join(PACKAGE_ROOT, '.mim')


@dataclass(frozen=True)
class ZooModel:
    name: str
    config: str  # absolute path
    weights: Optional[str]  # the released trained model, if there is one
    task: str  # the first of the metafile's Tasks


def load_metafiles(root: str = MIM_ROOT) -> Dict[str, dict]:
    """{metafile path as model-index.yml names it: the parsed metafile}, for every metafile it imports."""
    index_file = osp.join(root, 'model-index.yml')
    if not osp.isfile(index_file):
        raise FileNotFoundError(f'{index_file} is missing: the package was installed without its configs.')
    with open(index_file) as f:
        index = yaml.safe_load(f)
    metafiles = {}
    for metafile in index.get('Import', []):
        with open(osp.join(root, metafile)) as f:
            metafiles[metafile] = yaml.safe_load(f)
    return metafiles


def load_model_index(root: str = MIM_ROOT) -> Dict[str, ZooModel]:
    """Every model of every metafile that ``root/model-index.yml`` imports, by name."""
    models = {}
    for metafile in load_metafiles(root).values():
        for entry in metafile.get('Models', []):
            weights = entry.get('Weights')
            tasks = entry.get('Metadata', {}).get('Tasks') or ['']
            models[entry['Name']] = ZooModel(entry['Name'], osp.join(root, entry['Config']),
                                             weights[0] if isinstance(weights, list) else weights, tasks[0])
    return models


def list_models(pattern: str = '') -> List[str]:
    """Names of the zoo's models that contain ``pattern``."""
    return sorted(name for name in load_model_index() if pattern in name)


def find_model(name: str) -> ZooModel:
    """The zoo entry called ``name`` (a config file name without ``.py`` also works)."""
    models = load_model_index()
    key = name[:-3] if name.endswith('.py') else name
    if key not in models:
        close = [known for known in models if key.split('_')[0] in known] or list(models)
        raise ValueError(f'Unknown model {name!r}. Known models (python -c "from mmlightvit.apis import list_models; '
                         f'print(list_models())"): {", ".join(sorted(close)[:40])}'
                         f'{", ..." if len(close) > 40 else ""}')
    return models[key]
