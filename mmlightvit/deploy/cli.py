"""The command-line arguments the export tools share (tools/deploy/export_onnx.py, export_executorch.py,
export_coreml.py): what to export, where to, at which sizes, and how the export is checked against PyTorch."""
import argparse
import sys
from typing import List, Optional, Sequence, Tuple

from mmengine.config import DictAction

from .onnx_export import MODES, ParityResult
from .runtime import DETECTOR_KINDS

DEFAULT_CHECK_SHAPES = [(224, 224), (200, 328)]


def add_model_arguments(parser: argparse.ArgumentParser, whole_models: str, out_help: str,
                        overwrite_help: str = 'replace OUT if it exists (never an input)',
                        shape_help: str = 'input size used for tracing (the graph stays dynamic; with --static, '
                        'its fixed size)') -> None:
    """CONFIG, CHECKPOINT, --mode, --out, --overwrite, --shape and --cfg-options. ``whole_models`` names what
    ``--mode model`` exports with this tool (e.g. 'segmentor / classifier')."""
    parser.add_argument('config', help='model config (mmdet / mmseg / mmpretrain, with a mmlightvit backbone)')
    parser.add_argument('checkpoint', help="checkpoint file, or 'none' for random initial weights")
    parser.add_argument('--mode', choices=MODES, default='backbone',
                        help=f'backbone: the fused backbone alone; model: the whole {whole_models}')
    parser.add_argument('--out', help=out_help)
    parser.add_argument('--overwrite', action='store_true', help=overwrite_help)
    parser.add_argument('--shape', type=int, nargs=2, default=(224, 224), metavar=('H', 'W'),
                        help=shape_help)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config settings, key=value')


def add_check_arguments(parser: argparse.ArgumentParser, runtime: str) -> None:
    """--static and the comparison with PyTorch: --check-shapes, --batch, --no-check, --warmup, --repeat,
    --threads."""
    parser.add_argument('--static', action='store_true',
                        help='a fixed-size graph of the --shape size (one file per size)')
    parser.add_argument('--check-shapes', type=int, nargs='+', metavar='H W',
                        help=f'pairs of H W at which {runtime} is compared with PyTorch (default: '
                        f'{" ".join(f"{h} {w}" for h, w in DEFAULT_CHECK_SHAPES)}; with --static: the --shape)')
    parser.add_argument('--batch', type=int, default=1, help='batch size of the check inputs')
    parser.add_argument('--no-check', action='store_true', help=f'export only, skip the comparison with {runtime}')
    parser.add_argument('--warmup', type=int, default=2, help='untimed runs before timing')
    parser.add_argument('--repeat', type=int, default=5, help='timed runs (the median is reported)')
    parser.add_argument('--threads', type=int, help=f"CPU threads of PyTorch and {runtime} (default: PyTorch's)")


def size_pairs(parser: argparse.ArgumentParser, values: Optional[Sequence[int]],
               option: str) -> Optional[List[Tuple[int, int]]]:
    """``values`` (H1 W1 H2 W2 ...) as (H, W) pairs; a parser error for an odd count or a size below 1."""
    if values is None:
        return None
    if len(values) % 2:
        parser.error(f'{option} takes pairs H W, got {len(values)} numbers.')
    if min(values) <= 0:
        parser.error(f'{option}: sizes must be positive.')
    return [(values[i], values[i + 1]) for i in range(0, len(values), 2)]


def check_shapes(parser: argparse.ArgumentParser, args: argparse.Namespace) -> List[Tuple[int, int]]:
    """Check the shared arguments and return the sizes at which the export is compared with PyTorch."""
    if min(args.shape) <= 0 or args.batch <= 0:
        parser.error('--shape and --batch must be positive.')
    shapes = size_pairs(parser, args.check_shapes, '--check-shapes')
    if shapes is None:
        return [tuple(args.shape)] if args.static else list(DEFAULT_CHECK_SHAPES)
    if args.static and set(shapes) != {tuple(args.shape)}:
        parser.error(f'--static exports one graph of the --shape size ({args.shape[0]} {args.shape[1]}), which '
                     'runs at that size only: leave out --check-shapes, or export each size in a run of its own '
                     '(--shape H W --out FILE).')
    return shapes


def parity_exit_status(results: Sequence[ParityResult], tolerance: float, kind: str, checked: str) -> int:
    """1 and a note on stderr when a parity check failed (``checked``: what the results are of, e.g. 'sizes'),
    else 0."""
    failed = [r for r in results if not r.passed]
    if not failed:
        return 0
    print(f'\nParity check failed on {len(failed)} of {len(results)} {checked} (tolerance {tolerance:g}).',
          file=sys.stderr)
    if kind in DETECTOR_KINDS:
        print('A few differing detections among many are usually near-equal scores (random or barely trained '
              'weights, INT8 rounding) for which NMS or top-k keep another box; compare the metric on a trained '
              'checkpoint (tools/test.py CONFIG FILE) before taking it for an export error.', file=sys.stderr)
    return 1
