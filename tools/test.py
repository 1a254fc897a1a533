"""Evaluate a checkpoint with a config (detection, segmentation or classification).

CHECKPOINT may also be a whole model exported by tools/deploy/export_onnx.py --mode model (``*.onnx``): onnxruntime
(or OpenVINO, ``--backend openvino``) then runs it inside the config's data pipeline and evaluator
(mmlightvit.deploy.runtime), for the same metrics; or by tools/deploy/export_executorch.py --mode model (``*.pte``,
its metadata in ``*.pte.json`` beside it), which ExecuTorch (XNNPACK) runs. The file type picks the runtime.
"""
import argparse
import os
import os.path as osp

import torch
from mmengine.config import DictAction

from mmlightvit.deploy.runtime import BACKENDS, ExportedModelError, is_exported_model, use_exported_model
from mmlightvit.engine import (ConfigError, DatasetNotFoundError, build_runner, check_dataset_paths,
                               end_children_with_this_process, finish_distributed, load_config, prepare_run)
from mmlightvit.engine.amp import BF16_MODULES
from mmlightvit.engine.setup import ClassCountError, dataset_folders
from mmlightvit.engine.tta import tta_pipeline
from mmlightvit.utils.cli import exit_on_user_error
from mmlightvit.utils.files import check_output


def parse_args():
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file, or an exported model (.onnx, .pte)')
    parser.add_argument('--work-dir', help='the dir to save the evaluation metrics')
    parser.add_argument('--backend', choices=BACKENDS,
                        help='the runtime of an exported model (CPU): onnxruntime (default) or openvino for .onnx, '
                        'executorch for .pte (its only runtime, the default)')
    parser.add_argument('--bf16', action='store_true',
                        help='the BF16 form: test the model under bfloat16 autocast (a detector: its backbone and '
                        'neck; mmcv\'s CPU kernels in the heads take float32); an exported .onnx file: OpenVINO '
                        '(--backend openvino) computes its float operations in bfloat16 (CPUs with AVX512_BF16 / AMX)')
    parser.add_argument('--tta', action='store_true',
                        help="test-time augmentation: the config's tta_model (mmseg's SegTTAModel, mmdet's "
                        'DetTTAModel) over its tta_pipeline (e.g. multi-scale + flip)')
    parser.add_argument('--allow-partial-load', action='store_true',
                        help='evaluate even if the checkpoint does not match the model (the parts it lacks stay '
                        'random and are listed); by default such a checkpoint stops the test with the keys named')
    parser.add_argument('--out', help='detection: dump the predictions to this pickle file (results.pkl); '
                        'segmentation: write the predicted label maps to this directory (one PNG per image, as '
                        "mmseg 1.x's test.py), or, for a .pkl path, dump the raw predictions")
    parser.add_argument('--overwrite', action='store_true',
                        help='let --out replace an existing file, and --out / --show-dir write into non-empty folders '
                        '(never into a dataset, never over the config or checkpoint)')
    parser.add_argument('--show', action='store_true', help='show prediction results in a window')
    parser.add_argument('--show-dir', help='save images with predictions drawn on them to this directory')
    parser.add_argument('--wait-time', type=float, default=2, help='seconds each image is shown with --show')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value, e.g. test_dataloader.batch_size=2')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def enable_visualization(cfg, show: bool, show_dir, wait_time: float) -> None:
    """Turn on the config's visualization hook (mmdet's and mmseg's take slightly different options)."""
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        raise RuntimeError('--show/--show-dir need default_hooks.visualization in the config.')
    hook.update(draw=True, show=show, wait_time=wait_time)
    if show_dir:
        if 'Det' in hook.get('type', ''):
            hook.test_out_dir = osp.abspath(show_dir)  # mmdet writes one image per sample there
        else:
            hook.interval = 1
            cfg.visualizer.save_dir = osp.abspath(show_dir)  # mmseg saves through the visualizer


def write_label_maps(cfg, out_dir: str) -> None:
    """Have mmseg's IoUMetric save each predicted label map as a PNG in ``out_dir`` while it evaluates."""
    evaluators = cfg.test_evaluator if isinstance(cfg.test_evaluator, list) else [cfg.test_evaluator]
    metrics = [e for e in evaluators if 'IoUMetric' in str(e.get('type', ''))]
    if not metrics:
        raise RuntimeError('--out DIR writes label maps through mmseg\'s IoUMetric, which this config\'s '
                           'test_evaluator does not use; pass a .pkl path to dump the raw predictions instead.')
    for metric in metrics:
        metric['output_dir'] = osp.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)


def dumps_pickle(out) -> bool:
    """Whether ``--out`` names a pickle of the predictions (else a folder of label maps)."""
    return bool(out) and out.endswith(('.pkl', '.pickle'))


def check_outputs(cfg, args) -> None:
    """Refuse, before anything is built or evaluated, outputs that would replace the user's files or cannot be
    written (an evaluation on COCO takes long; its results must not be lost at the end)."""
    protected = dataset_folders(cfg)
    inputs = [args.config, args.checkpoint]
    notes = []
    if args.out:
        notes.append(check_output(args.out, '--out', inputs, protected, args.overwrite,
                                  folder=not dumps_pickle(args.out)))
    if args.show_dir:
        notes.append(check_output(args.show_dir, '--show-dir', inputs, protected, args.overwrite, folder=True))
    for note in filter(None, notes):
        print(note, flush=True)


def enable_tta(cfg) -> None:
    """Wrap the model in the config's ``tta_model`` and test over its test-time augmentation, as mmdet's and mmseg's
    ``tools/test.py --tta`` do; the passes are derived from the config's own test scale where it sets
    ``tta_scale_ratios`` (see :mod:`mmlightvit.engine.tta`)."""
    missing = [key for key in ('tta_model', ) if key not in cfg]
    if 'tta_pipeline' not in cfg and not cfg.get('tta_scale_ratios'):
        missing.append('tta_pipeline (or tta_scale_ratios)')
    if missing:
        raise RuntimeError(f'--tta needs {" and ".join(missing)} in the config (mmseg configs inherit tta_model '
                           "from mmseg's default_runtime and tta_scale_ratios from configs/_base_/datasets/).")
    cfg.test_dataloader.dataset.pipeline = tta_pipeline(cfg)
    cfg.tta_model.module = cfg.model
    cfg.model = cfg.tta_model


def enable_bf16_test(cfg) -> None:
    """The BF16 form: the model (a detector: its backbone and neck) under bfloat16 autocast while it is tested."""
    device_type = 'cuda' if torch.cuda.is_available() else 'cpu'
    modules = BF16_MODULES.get(cfg.get('default_scope'))
    cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [
        dict(type='mmlightvit.BFloat16TestHook', autocast_modules=modules, device_type=device_type)]


def main():
    end_children_with_this_process()
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    check_dataset_paths(cfg, loaders=('test_dataloader', ))
    check_outputs(cfg, args)
    prepare_run(cfg, training=False, allow_partial_load=args.allow_partial_load)
    exported = is_exported_model(args.checkpoint)
    if exported:
        if args.tta:
            raise ConfigError('--tta runs the PyTorch model over augmented copies; an exported model is tested '
                              'without it.')
        use_exported_model(cfg, args.checkpoint, args.backend, bf16=args.bf16)
    else:
        cfg.load_from = args.checkpoint
    if args.tta:
        enable_tta(cfg)
    if args.bf16 and not exported:
        enable_bf16_test(cfg)
    if args.show or args.show_dir:
        enable_visualization(cfg, args.show, args.show_dir, args.wait_time)
    pickle_out = dumps_pickle(args.out)
    scope = cfg.get('default_scope')
    if args.out and not pickle_out:
        if scope != 'mmseg':
            raise ValueError('--out must be a .pkl or .pickle file for a detector (a directory of label maps is '
                             'for segmentors)')
        write_label_maps(cfg, args.out)
    runner = build_runner(cfg)
    if pickle_out:
        if scope == 'mmdet':
            from mmdet.evaluation import DumpDetResults  # masks as RLE, as mmdet's tools do
            runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
        else:
            from mmengine.evaluator import DumpResults
            runner.test_evaluator.metrics.append(DumpResults(out_file_path=args.out))
    runner.test()
    finish_distributed()


if __name__ == '__main__':
    with exit_on_user_error(ClassCountError, ConfigError, DatasetNotFoundError, ExportedModelError):
        main()
