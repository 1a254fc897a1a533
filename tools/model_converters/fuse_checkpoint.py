"""Fold a trained checkpoint into its deploy form: every conv-BN pair and RepVGG branch becomes one conv.

    python tools/model_converters/fuse_checkpoint.py CONFIG CHECKPOINT OUT

CONFIG is the config the checkpoint was trained with (detector, segmentor or classifier). CHECKPOINT is either a
whole-model checkpoint (what tools/train.py writes: ``state_dict`` with ``backbone.*``, ``neck.*``, ... keys) or a
backbone checkpoint (the backbone's keys alone, or a foreign layout that the backbone's ``convert_checkpoint``
understands, e.g. an official RepViT release); only the config's backbone is folded and saved in the second case.
The weights are loaded strictly (every key must match), the model is put in eval mode (BN folding uses the running
statistics) and folded with ``fuse_model``, and ``{'state_dict': ..., 'meta': {..., 'fused': True}}`` is saved.

Evaluate a fused whole-model checkpoint with the same config plus ``mmlightvit.FuseModelHook``, which sees
``meta['fused']`` and folds the model before the weights are loaded into it:

    python tools/test.py CONFIG OUT --cfg-options default_hooks.fuse.type=mmlightvit.FuseModelHook

(An unfused checkpoint evaluates fused through the same command; the hook then folds after loading. The option
adds the hook without touching the config's custom_hooks, e.g. RTMDet's EMAHook.)
"""
import argparse
import os.path as osp
from functools import partial
from typing import Optional, Sequence

import torch

from mmlightvit.apis.model import build_model, config_without_pretrained
from mmlightvit.models.layers import fuse_model
from mmlightvit.models.weights import resolve_state
from mmlightvit.utils import load_checkpoint_file
from mmlightvit.utils.cli import exit_on_user_error
from mmlightvit.utils.files import check_output, replace_file_atomically


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='the config the checkpoint was trained with')
    parser.add_argument('checkpoint', help='trained whole-model checkpoint, or a backbone checkpoint')
    parser.add_argument('out', help='output file for the fused checkpoint')
    parser.add_argument('--overwrite', action='store_true', help='replace OUT if it exists (never the input)')
    return parser.parse_args(argv)


def count_fusable(model: torch.nn.Module) -> int:
    return sum(1 for m in model.modules() if callable(getattr(m, 'fuse', None)))


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    note = check_output(args.out, 'OUT', inputs=[args.checkpoint, args.config], overwrite=args.overwrite)
    # The trained weights replace everything; init_cfg would only try to download the ImageNet checkpoint.
    model = build_model(config_without_pretrained(args.config), seed=None)
    checkpoint = load_checkpoint_file(args.checkpoint)
    # A backbone checkpoint: fold the backbone alone (a foreign layout is converted on the way in).
    weights = resolve_state(model, checkpoint, f'Checkpoint {args.checkpoint!r}', part='any')
    weights.load()
    whole_model = weights.part == 'model'
    model = weights.target

    num_fusable = count_fusable(model)
    params_before = sum(p.numel() for p in model.parameters())
    fused = fuse_model(model.eval())
    params_after = sum(p.numel() for p in fused.parameters())
    if count_fusable(fused):
        raise RuntimeError('fuse_model left modules with a fuse() method unfolded.')

    meta = dict(
        fused=True,
        config=osp.basename(args.config),
        source=osp.basename(args.checkpoint),
        content='model' if whole_model else 'backbone',
        folded_modules=num_fusable,
        converter='tools/model_converters/fuse_checkpoint.py')
    fused_state = {k: v.detach().clone().contiguous() for k, v in fused.state_dict().items()}
    replace_file_atomically(args.out, partial(torch.save, {'state_dict': fused_state, 'meta': meta}))
    if note:
        print(note)
    print(f'{args.checkpoint} -> {args.out}\n'
          f'  {meta["content"]}: folded {num_fusable} modules, parameters {params_before / 1e6:.3f}M -> '
          f'{params_after / 1e6:.3f}M, {len(fused_state)} tensors.')
    if whole_model:
        print(f'  Evaluate it with: python tools/test.py {args.config} {args.out} '
              '--cfg-options default_hooks.fuse.type=mmlightvit.FuseModelHook')
    return dict(meta=meta, params_before=params_before, params_after=params_after, out=args.out)


if __name__ == '__main__':
    with exit_on_user_error():
        main()
