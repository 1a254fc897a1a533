"""Convert an officially released detector or segmentor (RepViT, TransNeXt, FasterViT's DINO) to this project's
keys, once.

    python tools/model_converters/release_to_mmlightvit.py CONFIG SRC DST

Converting is optional: ``tools/test.py CONFIG SRC`` (and ``dist_test.sh``) evaluates a release directly, converting
it in memory the same way. The official dense releases keep their heads under the names mmdet 3.3 / mmseg 1.2 use
(mmdet 2.x and mmseg 0.x wrote the same names); only the backbone is in the official module tree, and it goes
through the backbone's own converter. The result is checked strictly against the model the config builds and
saved as ``{'state_dict', 'meta'}`` (``meta.dataset_meta`` from the release's ``CLASSES`` / ``PALETTE`` if it has
them). ``SRC`` is read safely (weights only); a file that does not fit the config is an error naming the keys.
"""
import argparse
import os.path as osp
from functools import partial
from typing import Optional, Sequence

import torch

from mmlightvit.apis.model import build_model, config_without_pretrained
from mmlightvit.models.weights import resolve_state
from mmlightvit.utils import load_checkpoint_file
from mmlightvit.utils.cli import exit_on_user_error
from mmlightvit.utils.files import check_output, replace_file_atomically


def dataset_meta(meta) -> Optional[dict]:
    """mmdet 3.x / mmseg 1.x ``dataset_meta`` of a release's ``meta`` (2.x / 0.x store ``CLASSES``, ``PALETTE``)."""
    if not isinstance(meta, dict):
        return None
    if isinstance(meta.get('dataset_meta'), dict):
        return meta['dataset_meta']
    if meta.get('CLASSES') is None:
        return None
    found = dict(classes=tuple(meta['CLASSES']))
    if meta.get('PALETTE') is not None:
        found['palette'] = [tuple(colour) for colour in meta['PALETTE']]
    return found


def main(argv: Optional[Sequence[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='the config of the released model, e.g. '
                        'configs/repvit/mask-rcnn_repvit-m1.1_coco.py')
    parser.add_argument('src', help='the released checkpoint')
    parser.add_argument('dst', help='output file')
    parser.add_argument('--overwrite', action='store_true', help='replace DST if it exists (never SRC)')
    args = parser.parse_args(argv)
    note = check_output(args.dst, 'DST', inputs=[args.src, args.config], overwrite=args.overwrite)

    model = build_model(config_without_pretrained(args.config))
    checkpoint = load_checkpoint_file(args.src)
    weights = resolve_state(model, checkpoint, f'Checkpoint {args.src!r}')
    state, layout = weights.state, weights.layout
    meta = dict(source=osp.basename(args.src), config=osp.basename(args.config),
                backbone_layout='official' if layout else 'mmlightvit',
                converter='tools/model_converters/release_to_mmlightvit.py')
    found = dataset_meta(checkpoint.get('meta') if isinstance(checkpoint, dict) else None)
    if found is not None:
        meta['dataset_meta'] = found
    out_state = {k: v.detach().clone().contiguous() for k, v in state.items()}
    replace_file_atomically(args.dst, partial(torch.save, {'state_dict': out_state, 'meta': meta}))
    if note:
        print(note)
    print(f'{args.src} -> {args.dst}\n  backbone layout: {meta["backbone_layout"]}; {len(state)} tensors; loads '
          f'strictly into the model of {osp.basename(args.config)}.')
    return dict(meta=meta, num_keys=len(state), dst=args.dst)


if __name__ == '__main__':
    with exit_on_user_error():
        main()
