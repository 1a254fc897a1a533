"""Run a detector or segmentor on your own images: draws the predictions and writes them as JSON.

    # a zoo model with its released weights (downloaded once), on one image
    python tools/image_demo.py demo.jpg mask-rcnn_repvit-m1.1_coco
    # your config and checkpoint, a folder of images (subfolders included), the re-parameterised model, on the CPU
    python tools/image_demo.py images/ configs/repvit/mask-rcnn_repvit-m1.1_coco.py --weights epoch_12.pth \\
        --fuse --device cpu --pred-score-thr 0.5 --out-dir outputs

For each image ``NAME`` (its path relative to the input folder, extension kept, so that ``a/x.png`` and ``a/x.jpg``
get outputs of their own) it writes ``OUT_DIR/vis/NAME`` (the image with the predictions drawn) and
``OUT_DIR/preds/NAME.json`` (detectors: labels, scores, boxes in input-image pixels and RLE masks, as mmdet's
DetInferencer writes them; segmentors: the classes found and their pixel shares, with the label map itself, 0-based
class indices, in ``OUT_DIR/preds/NAME_pred.png``).

Existing outputs are not replaced unless ``--overwrite`` is given, and an output is never one of the input images.
The output folder is skipped when it lies inside the input folder. An image that cannot be read is skipped with a
warning that names it; the run goes on, and ends with exit status 1 and the list of skipped files.
"""
import argparse
import json
import os
import os.path as osp
import sys

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('inputs', help='an image file or a folder of images (searched with its subfolders)')
    parser.add_argument('model', help='config file, or a model name from the metafiles (python -c "from '
                        'mmlightvit.apis import list_models; print(list_models())")')
    parser.add_argument('--weights', help='checkpoint path or URL (default: the released weights of a zoo model)')
    parser.add_argument('--out-dir', default='outputs', help='output folder (default outputs/)')
    parser.add_argument('--overwrite', action='store_true', help='replace outputs that exist from an earlier run')
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
    if args.batch_size < 1:
        parser.error('--batch-size must be at least 1')
    return args


def find_images(inputs: str, out_dir: str):
    """``[(path, name)]`` of the images to predict: ``name`` is the path relative to the input folder (the file
    name for a single image). The output folder is not searched when it lies inside the input folder."""
    if osp.isfile(inputs):
        return [(inputs, osp.basename(inputs))]
    found = []
    skip = osp.realpath(out_dir) if out_dir else None
    for folder, subfolders, files in os.walk(inputs):
        subfolders[:] = sorted(d for d in subfolders if osp.realpath(osp.join(folder, d)) != skip)
        for name in sorted(files):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                path = osp.join(folder, name)
                found.append((path, osp.relpath(path, inputs)))
    if not found:
        raise SystemExit(f'error: no images ({", ".join(IMAGE_EXTENSIONS)}) in {inputs} or its subfolders.')
    return found


def output_paths(name: str, out_dir: str) -> dict:
    """Where the outputs of the image ``name`` go: the drawn image, the predictions, and a segmentor's label map."""
    return dict(vis=osp.join(out_dir, 'vis', name), pred=osp.join(out_dir, 'preds', f'{name}.json'),
                label_map=osp.join(out_dir, 'preds', f'{name}_pred.png'))


def check_outputs(images, out_dir: str, args) -> None:
    """Before the model is built: no output is an input image, none exists unless --overwrite, the folder is
    writable. (A detector's outputs are a segmentor's less the label map, so the label maps are checked too.)"""
    from mmlightvit.utils.files import OutputPathError, check_output
    kinds = ([] if args.no_save_vis else ['vis']) + ([] if args.no_save_pred else ['pred', 'label_map'])
    real_inputs = {osp.realpath(path) for path, _ in images}
    existing = []
    for _, name in images:
        paths = output_paths(name, out_dir)
        for path in (paths[kind] for kind in kinds):
            if osp.realpath(path) in real_inputs:
                raise OutputPathError(f'The output {path} is one of the input images: choose an --out-dir outside '
                                      'the images.')
            if osp.exists(path):
                existing.append(path)
    if existing and not args.overwrite:
        raise OutputPathError(f'{len(existing)} outputs exist already (e.g. {", ".join(existing[:3])}). Choose '
                              'another --out-dir, or pass --overwrite to replace them.')
    if existing:
        print(f'--overwrite: replacing {len(existing)} existing outputs in {osp.abspath(out_dir)}.')
    check_output(out_dir, '--out-dir', folder=True, overwrite=True)


def readable(path: str):
    """None when the image decodes, else why not."""
    import mmcv
    try:
        if osp.getsize(path) == 0:
            return 'empty file'
        image = mmcv.imread(path)
    except Exception as err:  # decoders raise many kinds (cv2.error, AssertionError, OSError)
        return f'{type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else ""}'
    return None if image is not None and image.size else 'not a decodable image'


def segmentation_summary(label_map: np.ndarray, classes) -> dict:
    ids, counts = np.unique(label_map, return_counts=True)
    return {'classes': [classes[i] if classes and i < len(classes) else int(i) for i in ids.tolist()],
            'label_ids': ids.tolist(), 'pixel_share': (counts / label_map.size).round(6).tolist(),
            'shape': list(label_map.shape)}


def _write_json(path: str, data) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(data, f)


def predict(inferencer, batch, out_dir: str, args, segmentation: bool) -> list:
    """Predict a batch of ``(path, name)``, write its outputs, return its predictions as dicts."""
    import mmcv
    paths = [path for path, _ in batch]
    if segmentation:
        samples = inferencer(paths, batch_size=len(paths), return_datasamples=True)
    else:
        samples = inferencer(paths, batch_size=len(paths), return_datasamples=True, no_save_vis=True,
                             no_save_pred=True)['predictions']
    samples = samples if isinstance(samples, list) else [samples]
    drawn = [None] * len(batch)
    if args.show or (out_dir and not args.no_save_vis):
        options = dict(opacity=args.opacity) if segmentation else dict(pred_score_thr=args.pred_score_thr)
        drawn = inferencer.visualize(paths, samples, return_vis=True, show=args.show, img_out_dir='', **options)
    results = []
    for (path, name), sample, image in zip(batch, samples, drawn):
        if segmentation:
            label_map = sample.pred_sem_seg.data[0].cpu().numpy()
            result = segmentation_summary(label_map, inferencer.model.dataset_meta.get('classes'))
        else:
            result = inferencer.pred2dict(sample)
        result['img_path'] = path
        results.append(result)
        outputs = output_paths(name, out_dir)
        if out_dir and not args.no_save_vis:
            mmcv.imwrite(image[..., ::-1], outputs['vis'])  # drawn in RGB, written as BGR
        if out_dir and not args.no_save_pred:
            _write_json(outputs['pred'], result)
            if segmentation:
                Image.fromarray(label_map.astype(np.uint8)).save(outputs['label_map'])
    return results


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmlightvit.apis import LightSegInferencer, build_inferencer
    out_dir = '' if args.no_save_vis and args.no_save_pred else args.out_dir
    images = find_images(args.inputs, out_dir)
    if out_dir:
        check_outputs(images, out_dir, args)
    inferencer = build_inferencer(args.model, weights=args.weights, device=args.device, fuse=args.fuse)
    segmentation = isinstance(inferencer, LightSegInferencer)
    skipped, results, batch = [], [], []
    for index, (path, name) in enumerate(images):
        reason = readable(path)
        if reason is not None:
            print(f'warning: skipping {path}: {reason}', file=sys.stderr, flush=True)
            skipped.append(path)
        else:
            batch.append((path, name))
        if batch and (len(batch) == args.batch_size or index == len(images) - 1):
            results += predict(inferencer, batch, out_dir, args, segmentation)
            batch = []
    if args.print_result:
        print(json.dumps(results, indent=1))
    if out_dir and results:
        print(f'results of {len(results)} images written to {osp.abspath(out_dir)}')
    if skipped:
        print(f'error: {len(skipped)} of {len(images)} images could not be read and were skipped: '
              f'{", ".join(skipped)}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    from mmlightvit.utils.cli import exit_on_user_error
    with exit_on_user_error(ValueError, TypeError):
        sys.exit(main())
