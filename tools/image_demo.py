"""Run a detector or segmentor on your own images: draws the predictions and writes them as JSON.

    # a zoo model with its released weights (downloaded once), on one image
    python tools/image_demo.py demo.jpg mask-rcnn_repvit-m1.1_coco
    # your config and checkpoint, a folder of images, the re-parameterised (fused) model, on the CPU
    python tools/image_demo.py images/ configs/repvit/mask-rcnn_repvit-m1.1_coco.py --weights epoch_12.pth \\
        --fuse --device cpu --pred-score-thr 0.5 --out-dir outputs

Writes ``OUT_DIR/vis/<image>`` (the image with the predictions drawn) and ``OUT_DIR/preds/<image>.json``
(detectors: labels, scores, boxes in input-image pixels and RLE masks, as mmdet's DetInferencer writes them;
segmentors: the classes found and their pixel shares, with the label map itself, 0-based class indices, in
``OUT_DIR/preds/<image>_pred.png``).
"""
import argparse
import json
import os
import os.path as osp

import numpy as np
from PIL import Image


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('inputs', help='an image file or a folder of images')
    parser.add_argument('model', help='config file, or a model name from the metafiles (python -c "from '
                        'mmlightvit.apis import list_models; print(list_models())")')
    parser.add_argument('--weights', help='checkpoint path or URL (default: the released weights of a zoo model)')
    parser.add_argument('--out-dir', default='outputs', help='output folder (default outputs/)')
    parser.add_argument('--device', default=None, help='e.g. cpu or cuda:0 (default: cuda:0 if available)')
    parser.add_argument('--pred-score-thr', type=float, default=0.3, help='detections drawn from this score on')
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument('--fuse', action='store_true', help='run the re-parameterised model (same outputs, faster)')
    parser.add_argument('--opacity', type=float, default=0.5, help='segmentation: opacity of the drawn label map')
    parser.add_argument('--show', action='store_true', help='also show each image in a window')
    parser.add_argument('--no-save-vis', action='store_true', help='do not write the drawn images')
    parser.add_argument('--no-save-pred', action='store_true', help='do not write the predictions')
    parser.add_argument('--print-result', action='store_true', help='print the predictions')
    args = parser.parse_args(argv)
    if not osp.exists(args.inputs):
        parser.error(f'{args.inputs}: no such image or folder')
    return args


def segmentation_summary(label_map: np.ndarray, classes) -> dict:
    ids, counts = np.unique(label_map, return_counts=True)
    return {'classes': [classes[i] if classes and i < len(classes) else int(i) for i in ids.tolist()],
            'label_ids': ids.tolist(), 'pixel_share': (counts / label_map.size).round(6).tolist(),
            'shape': list(label_map.shape)}


def main(argv=None):
    args = parse_args(argv)
    from mmlightvit.apis import LightSegInferencer, build_inferencer
    inferencer = build_inferencer(args.model, weights=args.weights, device=args.device, fuse=args.fuse)
    out_dir = '' if args.no_save_vis and args.no_save_pred else args.out_dir
    if isinstance(inferencer, LightSegInferencer):
        # the label maps are written here, named after their images (mmseg's inferencer numbers them)
        results = inferencer(args.inputs, batch_size=args.batch_size, show=args.show,
                             out_dir='' if args.no_save_vis else out_dir, opacity=args.opacity,
                             return_datasamples=True)
        samples = results if isinstance(results, list) else [results]
        classes = inferencer.model.dataset_meta.get('classes')
        summaries = []
        for sample in samples:
            label_map = sample.pred_sem_seg.data[0].cpu().numpy()
            summary = segmentation_summary(label_map, classes)
            summary['img_path'] = sample.metainfo.get('img_path')
            summaries.append(summary)
            if out_dir and not args.no_save_pred:
                name = osp.splitext(osp.basename(summary['img_path'] or f'{len(summaries) - 1:08d}'))[0]
                os.makedirs(osp.join(out_dir, 'preds'), exist_ok=True)
                with open(osp.join(out_dir, 'preds', f'{name}.json'), 'w') as f:
                    json.dump(summary, f)
                Image.fromarray(label_map.astype(np.uint8)).save(osp.join(out_dir, 'preds', f'{name}_pred.png'))
        if args.print_result:
            print(json.dumps(summaries, indent=1))
    else:
        inferencer(args.inputs, batch_size=args.batch_size, show=args.show, out_dir=out_dir,
                   pred_score_thr=args.pred_score_thr, no_save_vis=args.no_save_vis, no_save_pred=args.no_save_pred,
                   print_result=args.print_result)
    if out_dir:
        print(f'results written to {osp.abspath(out_dir)}')


if __name__ == '__main__':
    main()
