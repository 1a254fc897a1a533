"""Train a detector, segmentor or classifier from a config (the config's default_scope picks mmdet/mmseg/...)."""
import argparse
import os

from mmengine.config import DictAction

from mmlightvit.engine import (build_runner, check_dataset_paths, enable_amp,
                               end_children_with_this_process, find_resume_checkpoint, finish_distributed,
                               load_config, prepare_run)


def parse_args():
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true', help='enable automatic mixed precision training (GPU)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate by the actual batch size (auto_scale_lr in the config)')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from the given checkpoint, or, without a path, from the newest complete one in '
                        'the work dir (the one last_checkpoint names, else the newest epoch_N/iter_N.pth)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value, e.g. train_cfg.max_epochs=1')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    # torchrun sets LOCAL_RANK; torch.distributed.launch passes --local-rank
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main():
    end_children_with_this_process()
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    check_dataset_paths(cfg)
    prepare_run(cfg, training=True)
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
        cfg.resume = True
        cfg.load_from = args.resume
    runner = build_runner(cfg)
    runner.train()
    finish_distributed()


if __name__ == '__main__':
    main()
