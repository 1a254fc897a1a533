"""tools/analysis/benchmark.py, ablate.py and analyze_logs.py on tiny inputs and tiny runs (CPU)."""
import csv
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import forked_python, load_tool, run_python

ROOT = Path(__file__).resolve().parents[1]
TINY_DET = ROOT / 'tests/data/configs/mask-rcnn_tiny-resnet_demo.py'
SEG_DEMO = ROOT / 'configs/repvit/fpn_repvit-m1.1_ade20k-demo.py'
# One short epoch on 4 images, evaluated on 4: a run takes seconds and writes real logs and metrics.
TINY_RUN = ['train_cfg.max_epochs=1', 'train_dataloader.dataset.indices=4', 'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False', 'val_dataloader.dataset.indices=4',
            'test_dataloader.dataset.indices=4', 'val_dataloader.num_workers=0',
            'val_dataloader.persistent_workers=False', 'test_dataloader.num_workers=0',
            'test_dataloader.persistent_workers=False']


def _tool(name: str):
    return load_tool(f'tools/analysis/{name}.py')


def _run(args, check=True):
    return run_python(args, check=check, timeout=900)


# ----------------------------------------------------------------------------------------------------------------
# benchmark.py


def test_benchmark_backbone_forms_and_reference(tmp_path):
    out = tmp_path / 'bench.md'
    rows = _tool('benchmark').main(['RepViT:m0.9', 'EdgeNeXt:xx-small', '--compare', '--shape', '64', '96',
                                    '--batch', '1', '2', '--repeat', '2', '--warmup', '0', '--threads', '1',
                                    '--out', str(out)])
    forms = {(r.target, r.form, r.batch): r for r in rows}
    assert set(forms) == {(t, f, b) for b in (1, 2) for t, f in [('RepViT:m0.9', 'eager'), ('RepViT:m0.9', 'fused'),
                                                                 ('RepViT:m0.9', 'reference (timm)'),
                                                                 ('RepViT:m0.9', 'reference fused (timm)'),
                                                                 ('EdgeNeXt:xx-small', 'eager'),
                                                                 ('EdgeNeXt:xx-small', 'reference (timm)')]}
    for r in rows:
        assert r.shape == (64, 96) and r.median_ms > 0 and r.images_per_second == pytest.approx(r.batch * 1000 /
                                                                                                r.median_ms)
        if r.form == 'fused':
            assert r.max_rel_diff < 1e-4  # folding is exact up to float rounding
        if r.form.startswith('reference'):
            # the reference runs with our weights: the same network (timm's fused one up to folding's rounding)
            assert r.max_rel_diff < (1e-4 if 'fused' in r.form else 1e-5)
        assert r.macs_per_image > 0 and r.gflops_per_second == pytest.approx(
            r.macs_per_image * r.batch / r.median_ms / 1e6)
    table = out.read_text()
    assert table.count('\n| RepViT:m0.9 |') == 8
    # like with like: eager against timm's model, fused against timm's re-parameterised model
    assert 'RepViT:m0.9 64x96 batch 1 fp32 cpu: reference fused (timm) / ours (fused) latency' in table
    assert 'RepViT:m0.9 64x96 batch 1 fp32 cpu: reference (timm) / ours (eager) latency' in table
    from mmlightvit.analysis.complexity import count_arch
    assert forms[('RepViT:m0.9', 'eager', 1)].macs_per_image == count_arch('RepViT:m0.9', shape=(64, 96)).macs
    assert len(json.loads(out.with_suffix('.json').read_text())) == len(rows)


def test_benchmark_deploy_forms_compute_the_same_features():
    # ExecuTorch's forms: tests/test_export_executorch.py (its lowering of RepViT-M0.9 takes minutes here)
    rows = _tool('benchmark').main(['RepViT:m0.9', '--deploy-forms', '--deploy-runtimes', 'onnxruntime', 'openvino',
                                    '--shape', '64', '96', '--batch', '1', '2', '--repeat', '1', '--warmup', '0',
                                    '--threads', '1', '--no-macs'])
    forms = {(r.form, r.batch): r for r in rows}
    deploy = ['channels-last (fused)', 'oneDNN (fused)', 'onnxruntime (fused)', 'openvino (fused)']
    int8 = ['onnxruntime int8 (fused)', 'openvino int8 (fused)']
    from mmlightvit.deploy.runtime import openvino_cpu_capabilities
    bf16 = ['openvino bf16 (fused)'] if 'BF16' in openvino_cpu_capabilities() else []  # (else: not timed)
    assert set(forms) == {(f, b) for f in ['eager', 'fused', *deploy, *bf16, *int8] for b in (1, 2)}
    for batch in (1, 2):  # the traced / exported graphs run the second batch size too
        for name in deploy:
            assert forms[(name, batch)].max_rel_diff < 1e-4, name
        for name in bf16:  # bfloat16's 8-bit mantissa: near the float features, and not float32
            assert 1e-4 < forms[(name, batch)].max_rel_diff < 0.1, name
        for name in int8:  # calibrated on random inputs: timed faithfully, near the float features
            assert 0 < forms[(name, batch)].max_rel_diff < 0.5, name


def test_time_forms_settles_each_timed_run():
    """--settle N: N untimed runs of a form right before each of its timed runs (after the first run, whose output
    is compared, and the warm-up)."""
    import torch
    from mmlightvit.analysis import benchmark as bench
    calls = []
    form = bench.Form('eager', torch.nn.Identity(), lambda x: calls.append(x) or x)
    rows = bench.time_forms([form], torch.zeros(1), 'cpu', 'fp32', repeat=3, warmup=1, target='t', shape=(1, 1),
                            batch=1, settle=2)
    assert len(calls) == 1 + 1 + 3 * (2 + 1) and len(rows) == 1
    # a runtime's form computes in its graph's precision: under autocast it is not timed again
    runtime = bench.Form('onnxruntime', torch.nn.Identity(), lambda x: x, own_precision=True)
    assert [r.form for r in bench.time_forms([form, runtime], torch.zeros(1), 'cpu', 'bf16', repeat=1, warmup=0,
                                             target='t', shape=(1, 1), batch=1)] == ['eager']
    assert _tool('benchmark').parse_args(['RepViT:m0.9', '--deploy-forms']).settle == 1
    assert _tool('benchmark').parse_args(['RepViT:m0.9']).settle == 0


def test_benchmark_profile_splits_a_detectors_predict(tmp_path):
    out = tmp_path / 'profile.md'
    _tool('benchmark').main([str(TINY_DET), '--profile', '--shape', '64', '64', '--batch', '1', '--repeat', '2',
                             '--warmup', '0', '--no-fuse', '--no-macs', '--out', str(out)])
    text = out.read_text()
    rows = {line.split(' | ')[0].strip('| '): float(line.split(' | ')[1]) for line in text.splitlines()
            if line.startswith('| ') and line.count(' | ') == 2 and not line.startswith(('| stage', '| ---'))}
    stages = ['backbone', 'neck', 'RPN (head + proposals)', 'RoI box head (+ NMS)', 'RoI mask head']
    assert all(rows[stage] > 0 for stage in stages), rows
    assert rows['of which mask pasting to the image'] <= rows['RoI mask head']
    assert sum(rows[stage] for stage in stages) <= rows['total']


def test_benchmark_whole_segmentor_cli():
    proc = _run(['tools/analysis/benchmark.py', str(SEG_DEMO), '--shape', '64', '80', '--batch', '1', '--repeat',
                 '1', '--warmup', '0'])
    lines = [line for line in proc.stdout.splitlines() if line.startswith(f'| {SEG_DEMO}')]
    assert [line.split(' | ')[1] for line in lines] == ['eager', 'fused']
    assert float(lines[1].split(' | ')[10]) < 1e-4  # fused segmentor's logits match the eager ones


def test_benchmark_detector_in_bfloat16_on_cpu():
    # mmcv's CPU NMS / RoIAlign take float32 only: the detector's backbone and neck run under autocast, the heads not
    rows = _tool('benchmark').main([str(TINY_DET), '--shape', '64', '64', '--batch', '1', '--repeat', '1',
                                    '--warmup', '0', '--no-fuse', '--dtype', 'fp32', 'bf16'])
    assert [(r.form, r.dtype) for r in rows] == [('eager', 'fp32'), ('eager', 'bf16')]


def test_benchmark_transnext_attention_paths_with_cpu_memory():
    # the paths compute the same features; each form's peak memory comes from a process of its own
    rows = _tool('benchmark').main(['TransNeXt:micro', '--attention-paths', 'reference', 'efficient', 'flash',
                                    '--memory', '--shape', '48', '80', '--batch', '1', '--repeat', '1', '--warmup',
                                    '0', '--threads', '1', '--no-macs', '--backbone-options', 'img_size=64'])
    assert [r.form for r in rows] == ['attn=reference', 'attn=efficient', 'attn=flash']
    for r in rows[1:]:
        assert r.max_rel_diff < 1e-5
    if Path('/proc/self/clear_refs').exists():
        assert all(r.peak_memory_mb > 0 for r in rows), rows


def test_benchmark_former_attention_path_name_still_works_and_warns():
    # 'fused' (the flash path's name until this release): the flash path, with a deprecation warning naming it
    from mmlightvit.analysis import benchmark as bench
    from mmlightvit.models.backbones import TransNeXt
    args = ['TransNeXt:micro', '--attention-paths', 'efficient', 'fused', '--shape', '32', '32', '--batch', '1',
            '--repeat', '1', '--warmup', '0', '--threads', '1', '--no-macs']
    message = "attention path 'fused' is now called 'flash'.*use 'flash'"
    with pytest.warns(DeprecationWarning, match=message) as record:
        rows = _tool('benchmark').main(args)
    assert [r.form for r in rows] == ['attn=efficient', 'attn=flash'] and rows[1].max_rel_diff < 1e-5
    # raised from the tool's own code: run as a script that is __main__, whose DeprecationWarnings Python shows
    raised_at = [Path(w.filename) for w in record if 'attention path' in str(w.message)]
    assert raised_at == [ROOT / 'tools/analysis/benchmark.py'], raised_at
    backbone = TransNeXt(dict(widths=(16, 32, 64, 128), depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8)),
                         attn_impl='reference', fast_inference=False)
    with pytest.warns(DeprecationWarning, match=message):  # the library function too
        form, = bench.attention_path_forms(backbone, ['fused'])
    assert form.name == 'attn=flash' and form.module.fast_inference and form.module.attn_impl == 'efficient'


def test_benchmark_training_steps(monkeypatch):
    from mmlightvit.analysis import benchmark as bench
    seen = []
    original = bench._run

    def recording(form, *args):
        seen.append((form.name, form.train, form.module.training))
        return original(form, *args)

    monkeypatch.setattr(bench, '_run', recording)
    rows = _tool('benchmark').main(['RepViT:m0.9', '--train', '--compare', '--shape', '64', '64', '--batch', '2',
                                    '--repeat', '1', '--warmup', '0', '--threads', '1'])
    # no re-parameterised forms in training; ours and timm's train-mode features agree (batch statistics)
    assert [r.form for r in rows] == ['eager', 'reference (timm)'] and rows[1].max_rel_diff < 1e-5
    assert seen and all(train and training for _, train, training in seen), seen
    eager = next(r for r in rows if r.form == 'eager')
    assert eager.macs_per_image > 0  # counting (in eval mode) left the model in train mode, as asserted above


def test_benchmark_rejects_bad_requests():
    proc = _run(['tools/analysis/benchmark.py', 'RepViT:m9', '--batch', '1', '--repeat', '1'], check=False)
    assert proc.returncode != 0 and 'm0.9' in proc.stderr  # the unknown arch error lists the known ones
    proc = _run(['tools/analysis/benchmark.py', 'TransNeXt:micro', '--compare'], check=False)
    assert proc.returncode != 0 and 'No installable reference implementation for TransNeXt' in proc.stderr
    proc = _run(['tools/analysis/benchmark.py', 'RepViT:m0.9', '--dtype', 'fp16', '--device', 'cpu'], check=False)
    assert proc.returncode != 0 and 'bf16' in proc.stderr
    proc = _run(['tools/analysis/benchmark.py', 'RepViT:m0.9', '--attention-paths', 'flash'], check=False)
    assert proc.returncode != 0 and "attention-paths are TransNeXt's" in proc.stderr
    proc = _run(['tools/analysis/benchmark.py', str(TINY_DET), '--train'], check=False)
    assert proc.returncode != 0 and '--train is for backbones' in proc.stderr


def test_benchmark_plot_against_metafile_metrics(tmp_path):
    configs = [ROOT / f'configs/repvit/mask-rcnn_repvit-{arch}_coco.py' for arch in ('m1.1', 'm1.5')]
    png = tmp_path / 'ap.png'
    tool = _tool('benchmark')
    rows = tool.main([*map(str, configs), '--backbone-only', '--shape', '64', '--batch', '1', '--repeat', '1',
                      '--warmup', '0', '--no-fuse', '--plot', str(png)])
    assert len(rows) == 2
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    known = tool.metafile_metrics()
    assert known['configs/repvit/mask-rcnn_repvit-m1.1_coco.py'] == ('box AP', 39.8)


def test_benchmark_plot_draws_one_series_per_form_and_precision():
    from mmlightvit.analysis.benchmark import Measurement
    tool = _tool('benchmark')
    known = {'configs/repvit/a.py': ('box AP', 39.8), 'configs/edgenext/b.py': ('box AP', 41.0)}

    def row(config, form, ms, dtype='fp32', batch=1):
        return Measurement(str(ROOT / config), form, (64, 64), batch, dtype, 'cpu', ms, None, None)

    rows = [row('configs/repvit/a.py', 'eager', 9.), row('configs/repvit/a.py', 'fused', 8.),
            row('configs/edgenext/b.py', 'eager', 7.), row('configs/repvit/a.py', 'openvino int8 (fused)', 3.),
            row('configs/edgenext/b.py', 'openvino int8 (fused)', 4.), row('configs/repvit/a.py', 'eager', 20., 'bf16'),
            row('configs/repvit/a.py', 'eager', 1., batch=16), row('configs/other/c.py', 'eager', 1.)]
    series = tool.plot_series(rows, known)
    assert series == {
        'PyTorch': [('configs/edgenext/b.py', 'edgenext', 7., 41.0), ('configs/repvit/a.py', 'repvit', 8., 39.8)],
        'openvino int8 (fused)': [('configs/repvit/a.py', 'repvit', 3., 39.8),
                                  ('configs/edgenext/b.py', 'edgenext', 4., 41.0)],
        'PyTorch bf16': [('configs/repvit/a.py', 'repvit', 20., 39.8)]}


# ----------------------------------------------------------------------------------------------------------------
# ablate.py and analyze_logs.py on two real (tiny) runs


@pytest.fixture(scope='module')
def ablation(tmp_path_factory):
    root = tmp_path_factory.mktemp('ablation')
    configs = root / 'configs'
    configs.mkdir()
    (configs / 'tiny_base.py').write_text(f"_base_ = '{TINY_DET}'\n")  # names with dots, as ours have
    (configs / 'tiny_small-anchors_m1.1.py').write_text(
        "_base_ = './tiny_base.py'\nmodel = dict(rpn_head=dict(anchor_generator=dict(scales=[4])))\n")
    (configs / 'tiny_broken.py').write_text("_base_ = './tiny_base.py'\nmodel = dict(backbone=dict(depth=7))\n")
    work_root = root / 'work'
    proc = _run(['tools/analysis/ablate.py', str(configs), '--work-root', str(work_root), '--baseline', 'tiny_base',
                 '--metrics', 'coco/bbox_mAP', 'coco/segm_mAP', '--cfg-options', *TINY_RUN], check=False)
    return configs, work_root, proc


def _summary(work_root):
    with open(work_root / 'summary.csv') as f:
        return {row['config']: row for row in csv.DictReader(f)}


def test_ablate_runs_and_collects(ablation):
    configs, work_root, proc = ablation
    assert proc.returncode == 1, proc.stderr[-3000:]  # one config cannot build: the tool reports the failure
    rows = _summary(work_root)
    assert [rows[name]['status'] for name in ('tiny_base', 'tiny_broken', 'tiny_small-anchors_m1.1')] == \
        ['done', 'failed', 'done']
    for name in ('tiny_base', 'tiny_small-anchors_m1.1'):
        assert 0 <= float(rows[name]['coco/bbox_mAP']) <= 1
        assert (work_root / name / 'train.log').is_file() and (work_root / name / 'epoch_1.pth').is_file()
    assert float(rows['tiny_base']['Δ coco/bbox_mAP']) == 0
    assert rows['tiny_broken']['coco/bbox_mAP'] == ''
    assert 'depth' in (work_root / 'tiny_broken' / 'train.log').read_text()  # why it failed is in its log
    markdown = (work_root / 'summary.md').read_text()
    assert markdown.splitlines()[0] == ('| config | status | coco/bbox_mAP | coco/segm_mAP | Δ coco/bbox_mAP '
                                        '| Δ coco/segm_mAP |')


def test_ablate_does_not_rerun_finished_configs(ablation):
    configs, work_root, _ = ablation
    proc = _run(['tools/analysis/ablate.py', str(configs / 'tiny_base.py'), '--work-root', str(work_root)])
    assert 'tiny_base: finished before, not run again' in proc.stdout
    assert len(list((work_root / 'tiny_base' / 'test').glob('*/*.json'))) == 1


def test_ablate_collects_against_a_dotted_baseline(ablation):
    configs, work_root, _ = ablation
    proc = _run(['tools/analysis/ablate.py', str(configs), '--work-root', str(work_root), '--collect-only',
                 '--baseline', 'tiny_small-anchors_m1.1', '--metrics', 'coco/bbox_mAP'])
    assert '| tiny_small-anchors_m1.1 | done |' in proc.stdout
    assert float(_summary(work_root)['tiny_small-anchors_m1.1']['Δ coco/bbox_mAP']) == 0


TWO_STAGE_DEMO = ROOT / 'configs/repvit/ablations/two-stage-demo'
_NO_WORKERS = [f'{loader}.{option}' for loader in ('train_dataloader', 'test_dataloader')
               for option in ('num_workers=0', 'persistent_workers=False')]


def test_two_stage_ablation_fine_tunes_from_the_pretrained_classifier(tmp_path):
    """The two-stage demo ablations, shortened: each classifier trains 2 iterations and is tested, then Semantic FPN
    trains from it with lr 0, so its backbone parameters must still be exactly the classifier's; the table holds
    both stages' metrics and the differences to the baseline."""
    import torch

    from mmlightvit.utils.checkpoint import load_checkpoint_file
    work_root = tmp_path / 'work'
    _run(['tools/analysis/ablate.py', str(TWO_STAGE_DEMO), '--work-root', str(work_root),
          '--baseline', 'fpn_repvit-m0.9_ade20k-demo_baseline',
          '--pretrain-cfg-options', 'train_cfg.max_epochs=1', 'train_dataloader.batch_size=4',
          'train_dataloader.dataset.indices=8', 'test_dataloader.dataset.indices=8', 'val_cfg=None',
          'val_dataloader=None', 'val_evaluator=None', *_NO_WORKERS,
          '--cfg-options', 'train_cfg.max_iters=2', 'train_dataloader.batch_size=2',
          'default_hooks.checkpoint.interval=2', 'optim_wrapper.optimizer.lr=0',
          'optim_wrapper.optimizer.weight_decay=0', 'test_dataloader.dataset.indices=2', *_NO_WORKERS])
    rows = _summary(work_root)
    for name, pretrain in (('fpn_repvit-m0.9_ade20k-demo_baseline', 'repvit-m0.9_in1k-demo_baseline'),
                           ('fpn_repvit-m0.9_ade20k-demo_se-none', 'repvit-m0.9_in1k-demo_se-none')):
        assert rows[name]['status'] == 'done'
        assert 0 <= float(rows[name]['pretrain/accuracy/top1']) <= 100 and 0 <= float(rows[name]['mIoU']) <= 100
        assert 'Δ pretrain/accuracy/top1' in rows[name] and 'Δ mIoU' in rows[name]
        classifier = load_checkpoint_file(work_root / 'pretrain' / pretrain / 'epoch_1.pth')['state_dict']
        finetuned = load_checkpoint_file(work_root / name / 'iter_2.pth')['state_dict']
        params = [k for k in finetuned if k.startswith('backbone.') and 'running_' not in k
                  and 'num_batches_tracked' not in k]
        assert params and all(torch.equal(finetuned[k], classifier[k]) for k in params)
        assert f"checkpoint='{work_root / 'pretrain' / pretrain / 'epoch_1.pth'}'" in (
            work_root / name / 'finetune' / f'{name}.py').read_text()
    # the ablation's backbone differs from the baseline's (no SE), so the two pre-trained classifiers differ too
    assert not any('.se.' in k for k in load_checkpoint_file(
        work_root / 'pretrain' / 'repvit-m0.9_in1k-demo_se-none' / 'epoch_1.pth')['state_dict'])


def _fake_test_run(work_dir: Path, metrics: dict) -> None:
    """What tools/test.py leaves in a work dir: test/<time>/<time>.json ending in the metrics."""
    log = work_dir / 'test' / '20260101_000000' / '20260101_000000.json'
    log.parent.mkdir(parents=True)
    log.write_text(json.dumps({'step': 1, **metrics}) + '\n')


def test_ablate_seeds_mean_std_and_standard_error(tmp_path):
    tool = _tool('ablate')
    # the third seed of 'change' failed; 'single' has one finished seed, which has no spread to show
    values = {'base': [0.20, 0.22, 0.24], 'change': [0.25, 0.26], 'single': [0.30]}
    for name, maps in values.items():
        for seed, value in enumerate(maps):
            _fake_test_run(tmp_path / name / f'seed-{seed}', {'coco/bbox_mAP': value})
    (tmp_path / 'change' / 'seed-2').mkdir()
    (tmp_path / 'change' / 'seed-2' / 'train.log').write_text('crashed')
    rows, columns = tool.collect(['base.py', 'change.py', 'single.py'], str(tmp_path), baseline='base', seeds=3)
    base, change, single = rows
    assert single['coco/bbox_mAP std'] is None and 'Δ coco/bbox_mAP s.e.' not in single
    assert (base['status'], base['seeds'], change['status'], change['seeds']) == ('done', 3, '2/3 done, failed', 2)
    assert base['coco/bbox_mAP'] == pytest.approx(0.22) and base['coco/bbox_mAP std'] == pytest.approx(0.02)
    assert change['coco/bbox_mAP std'] == pytest.approx(0.01 / 2 ** 0.5)
    assert change['Δ coco/bbox_mAP'] == pytest.approx(0.035)
    assert change['Δ coco/bbox_mAP s.e.'] == pytest.approx((0.02 ** 2 / 3 + 0.01 ** 2 / 2 / 2) ** 0.5)
    text = tool.write_tables(rows, columns, str(tmp_path))
    assert '| change | 2/3 done, failed | 2 | 0.2550 ± 0.0071 | +0.0350 ± 0.0126 |' in text
    assert '| single | 1/3 done | 1 | 0.3000 | 0.0800 |' in text
    with open(tmp_path / 'summary.csv') as f:
        assert next(csv.reader(f)) == ['config', 'status', 'seeds', 'coco/bbox_mAP', 'coco/bbox_mAP std',
                                       'Δ coco/bbox_mAP', 'Δ coco/bbox_mAP s.e.']


def test_ablate_seeds_train_each_config_with_each_seed(tmp_path):
    (tmp_path / 'tiny.py').write_text(f"_base_ = '{TINY_DET}'\n")
    work_root = tmp_path / 'work'
    proc = _run(['tools/analysis/ablate.py', str(tmp_path / 'tiny.py'), '--work-root', str(work_root), '--seeds',
                 '2', '--metrics', 'coco/bbox_mAP', '--cfg-options', *TINY_RUN])
    assert '| tiny | done | 2 |' in proc.stdout
    for seed in (0, 1):
        log = (work_root / 'tiny' / f'seed-{seed}' / 'train.log').read_text()
        assert f'randomness.seed={seed}' in log.splitlines()[0] and f'seed: {seed}' in log


def test_ablate_reports_missing_config(tmp_path):
    proc = _run(['tools/analysis/ablate.py', str(tmp_path / 'nope.py'), '--work-root', str(tmp_path)], check=False)
    assert proc.returncode != 0 and 'nope.py: no such config file or folder' in proc.stderr


def test_analyze_logs_plot_and_summary(ablation, tmp_path):
    _, work_root, _ = ablation
    runs = [str(work_root / 'tiny_base'), str(work_root / 'tiny_small-anchors_m1.1')]
    png = tmp_path / 'curves.png'
    proc = _run(['tools/analysis/analyze_logs.py', 'plot', *runs, '--keys', 'loss', 'coco/bbox_mAP', '--out',
                 str(png)])
    assert png.read_bytes()[:4] == b'\x89PNG' and 'loss (2 points)' in proc.stdout
    proc = _run(['tools/analysis/analyze_logs.py', 'summary', *runs])
    assert proc.stdout.count('coco/bbox_mAP ') == 2
    proc = _run(['tools/analysis/analyze_logs.py', 'plot', runs[0], '--keys', 'no_such_key', '--out', str(png)],
                check=False)
    assert proc.returncode != 0 and 'logged keys: ' in proc.stderr and 'loss' in proc.stderr


def test_gpu_report_script_runs_through_on_the_cpu(tmp_path):
    """tools/analysis/gpu_report.sh, checked on the CPU with tiny sizes (DEVICE=cpu QUICK=1): every part runs and
    the report holds its tables, so a short GPU lease is not spent on a broken script."""
    # PYTHON: its Python steps fork from the tests' tool server (tests/forked_tools.py) instead of each importing the
    # stack anew
    env = dict(os.environ, DEVICE='cpu', QUICK='1', TARGETS='RepViT:m0.9', PYTHON=forked_python())
    proc = subprocess.run(['bash', 'tools/analysis/gpu_report.sh', str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = (tmp_path / 'gpu_report.md').read_text()
    assert 'failed or timed out' not in report, report
    assert '| RepViT:m0.9 | fused | 64 x 96 | 1 | bf16 | cpu |' in report
    assert '| TransNeXt:tiny | attn=flash | 64 x 96 | 1 | fp32 | cpu |' in report
    assert '| configs/repvit/mask-rcnn_repvit-m1.1_coco.py |' in report  # ONNX Runtime against PyTorch
    assert "## TensorRT\n\nSkipped: TensorRT needs DEVICE=cuda" in report  # no GPU in the check
    train_row = report.split('| s / iter (median) |')[1].splitlines()[2]
    assert all(cell.strip() not in ('', '-') for cell in train_row.strip('|').split('|')), train_row
