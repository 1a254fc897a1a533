"""Look at a dataset as the model sees it: each image after the config's pipeline, with its annotations drawn.

    python tools/analysis/browse_dataset.py configs/repvit/mask-rcnn_repvit-m1.1_coco-demo.py --output-dir browse
    python tools/analysis/browse_dataset.py configs/repvit/fpn_repvit-m1.1_ade20k-demo.py --split val --max-images 5

Detection configs show boxes and masks (mmdet's DetLocalVisualizer), segmentation configs the label map (mmseg's
SegLocalVisualizer). ``--split train`` (default) runs the training pipeline with its random augmentation.
"""
import argparse
import os
import os.path as osp

import numpy as np
from mmengine.config import DictAction

from mmlightvit.utils.cli import exit_on_user_error

SPLITS = {'train': 'train_dataloader', 'val': 'val_dataloader', 'test': 'test_dataloader'}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='a detection or segmentation config')
    parser.add_argument('--split', choices=sorted(SPLITS), default='train', help='which dataloader (default train)')
    parser.add_argument('--output-dir', help='write the drawn images here (one per sample); a new or empty folder '
                        'unless --overwrite')
    parser.add_argument('--overwrite', action='store_true',
                        help='write into an --output-dir that already holds files (drawn images of the same names '
                        'are replaced)')
    parser.add_argument('--max-images', type=int, help='stop after this many images')
    parser.add_argument('--show', action='store_true', help='show each image in a window')
    parser.add_argument('--show-interval', type=float, default=2, help='seconds each image is shown')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config settings, key=value')
    args = parser.parse_args(argv)
    if not args.output_dir and not args.show:
        parser.error('nothing to do: give --output-dir and/or --show')
    return args


def _image_and_sample(item):
    """The pipeline's packed output as an RGB array and a data sample whose annotations the visualizer can draw."""
    image = item['inputs'].permute(1, 2, 0).numpy()[..., ::-1]  # packed images are BGR, CHW
    sample = item['data_samples'].numpy()
    instances = sample.get('gt_instances')
    if instances is not None:
        if hasattr(instances.get('bboxes'), 'tensor'):  # mmdet's box types
            instances.bboxes = instances.bboxes.tensor
        if hasattr(instances.get('masks'), 'to_ndarray'):  # bitmap / polygon masks
            instances.masks = instances.masks.to_ndarray().astype(bool)
    seg = sample.get('gt_sem_seg')
    if seg is not None and seg.shape != image.shape[:2]:
        # test pipelines load the label map after resizing the image: draw on the image at the label's size
        import mmcv
        image = mmcv.imresize(image, seg.shape[::-1])
    return np.ascontiguousarray(image), sample


def main(argv=None):
    args = parse_args(argv)
    from mmengine.registry import DATASETS, VISUALIZERS, init_default_scope

    from mmlightvit.engine import check_dataset_paths
    from mmlightvit.engine.setup import read_data_config
    cfg = read_data_config(args.config, args.cfg_options)
    if args.output_dir:  # before any work: never into the user's files, never into the dataset
        from mmlightvit.utils.files import check_output
        roots = [cfg[name].dataset.get('data_root') for name in SPLITS.values() if cfg.get(name)]
        note = check_output(args.output_dir, '--output-dir', protected=roots, overwrite=args.overwrite, folder=True)
        if note:
            print(note)
    loader = SPLITS[args.split]
    if not cfg.get(loader):
        raise SystemExit(f'{args.config} has no {loader}')
    check_dataset_paths(cfg, loaders=(loader, ))
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    dataset = DATASETS.build(cfg[loader].dataset)
    visualizer = VISUALIZERS.build(cfg.visualizer)
    visualizer.dataset_meta = dataset.metainfo
    if args.output_dir:
        os.makedirs(args.output_dir, exist_ok=True)
    count = len(dataset) if args.max_images is None else min(args.max_images, len(dataset))
    for index in range(count):
        image, sample = _image_and_sample(dataset[index])
        name = f'{index:06d}_{osp.basename(sample.metainfo.get("img_path", "image.png"))}'
        out_file = osp.join(args.output_dir, name) if args.output_dir else None
        visualizer.add_datasample(name, image, sample, draw_gt=True, draw_pred=False, show=args.show,
                                  wait_time=args.show_interval, out_file=out_file)
    print(f'{count} of {len(dataset)} images of the {args.split} split'
          + (f' written to {osp.abspath(args.output_dir)}' if args.output_dir else ''))


if __name__ == '__main__':
    with exit_on_user_error():
        main()
