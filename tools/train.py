"""Train a detector, segmentor or classifier from a config (the config's default_scope picks mmdet/mmseg/...)."""
import argparse
import os

from mmengine.config import DictAction

from mmlightvit.engine import (ConfigError, DatasetNotFoundError, build_runner, check_dataset_paths,
                               enable_amp, end_children_with_this_process, find_resume_checkpoint,
                               finish_distributed, load_config, prepare_run)
from mmlightvit.apis.model_index import find_model
from mmlightvit.engine.setup import ClassCountError
from mmlightvit.engine.work_dir import WorkDirBusyError, is_rank_zero, prepare_work_dir
from mmlightvit.utils import CheckpointError
from mmlightvit.utils.cli import exit_on_user_error


def parse_args():
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true', help='enable automatic mixed precision training (GPU)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate by the actual batch size (auto_scale_lr in the config)')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from the given checkpoint, or, without a path, from the newest complete one in '
                        'the work dir (the one last_checkpoint names, else the newest epoch_N/iter_N.pth); a folder: '
                        'the newest complete checkpoint in it')
    parser.add_argument('--finetune-from', metavar='CHECKPOINT',
                        help='start from a trained model: a checkpoint path or URL, or the name of a zoo model with '
                        'released weights (e.g. mask-rcnn_repvit-m1.1_coco). The layers whose shape follows the '
                        'class count are re-initialised, each one named; any other mismatch stops the run')
    parser.add_argument('--allow-partial-load', action='store_true',
                        help='with --finetune-from / load_from: train even if the checkpoint lacks parts of the '
                        'model (they keep their initialisation and are listed)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value, e.g. train_cfg.max_epochs=1')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    # torchrun sets LOCAL_RANK; torch.distributed.launch passes --local-rank
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def finetune_checkpoint(name: str) -> str:
    """A checkpoint path or URL as it is; a zoo model's name becomes its released weights."""
    if os.path.isfile(name) or '://' in name:
        return name
    if os.sep in name or name.endswith(('.pth', '.pt', '.tar')):
        raise CheckpointError(f'--finetune-from {name}: no such file.')
    try:
        model = find_model(name)
    except ValueError as err:
        raise ConfigError(f'--finetune-from {name}: neither a file nor a zoo model. {err}') from None
    if model.weights is None:
        raise ConfigError(f'--finetune-from {name}: the zoo model has no released weights (train it first, or '
                          'give a checkpoint path).')
    return model.weights


def main():
    end_children_with_this_process()
    args = parse_args()
    if args.finetune_from and args.resume is not None:
        raise ConfigError('--finetune-from starts a new run from trained weights; --resume continues a run. Give '
                          'one of them.')
    finetune_from = finetune_checkpoint(args.finetune_from) if args.finetune_from else None
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    check_dataset_paths(cfg)
    if is_rank_zero():  # one run per work dir; what a killed run left half-written goes
        prepare_work_dir(cfg.work_dir)
    prepare_run(cfg, training=True, allow_partial_load=args.allow_partial_load)
    if finetune_from is not None:
        cfg.load_from = finetune_from
    if args.amp:
        enable_amp(cfg)
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise RuntimeError('--auto-scale-lr needs auto_scale_lr=dict(base_batch_size=...) in the config.')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        # mmengine's own search reads last_checkpoint only, and starts over when it is missing
        checkpoint = find_resume_checkpoint(cfg.work_dir)
        cfg.resume = checkpoint is not None
        cfg.load_from = checkpoint
        if checkpoint is None:
            print(f'--resume: no checkpoint in {cfg.work_dir}; training starts from the beginning.', flush=True)
    elif args.resume is not None:
        checkpoint = args.resume
        if os.path.isdir(checkpoint):
            checkpoint = find_resume_checkpoint(checkpoint)
            if checkpoint is None:
                raise CheckpointError(f'--resume {args.resume}: the folder holds no epoch_N.pth / iter_N.pth '
                                      'checkpoint (and no last_checkpoint) to resume from.')
            print(f'--resume {args.resume}: resuming from {checkpoint}.', flush=True)
        elif not os.path.isfile(checkpoint) and '://' not in checkpoint:
            raise CheckpointError(f'--resume {args.resume}: no such file or folder.')
        cfg.resume = True
        cfg.load_from = checkpoint
    runner = build_runner(cfg)
    runner.train()
    finish_distributed()


if __name__ == '__main__':
    with exit_on_user_error(ClassCountError, ConfigError, DatasetNotFoundError, WorkDirBusyError):
        main()
