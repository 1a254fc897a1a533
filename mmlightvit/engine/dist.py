"""Distributed runs without CUDA (gloo), which mmengine 0.10.7 does not support out of the box.

Two things stand in the way, both in mmengine: its ``pytorch`` launcher calls ``torch.cuda.set_device``, and
``Runner.wrap_model`` passes ``device_ids=[LOCAL_RANK]`` to DistributedDataParallel, which rejects them for CPU
modules. :func:`setup_cpu_distributed` initialises the process group itself (the Runner then skips its own
``init_dist``) and selects :class:`CPUDistributedDataParallel`, which drops ``device_ids`` for CPU modules.
Under Slurm (``--launcher slurm``) the ranks and the address come from srun's variables
(:func:`export_slurm_environment`).
"""
import os
import subprocess

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.model import MMDistributedDataParallel

from mmlightvit.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """MMDistributedDataParallel that also wraps modules living on the CPU (gloo backend)."""

    def __init__(self, module, device_ids=None, **kwargs):
        if all(p.device.type == 'cpu' for p in module.parameters()):
            device_ids = None  # DDP wants no device ids for CPU modules
        super().__init__(module=module, device_ids=device_ids, **kwargs)


def export_slurm_environment() -> None:
    """Set torch.distributed's RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT from the variables srun
    gives each task, as mmengine's slurm launcher does for GPUs: the address is the job's first node
    (``scontrol show hostnames``), the port ``MASTER_PORT`` if set, else 29500."""
    missing = [v for v in ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST') if v not in os.environ]
    if missing:
        raise RuntimeError(f"--launcher slurm outside an srun task: {', '.join(missing)} not set "
                           '(start it with tools/slurm_train.sh / slurm_test.sh).')
    if 'MASTER_ADDR' not in os.environ:
        hosts = subprocess.run(['scontrol', 'show', 'hostnames', os.environ['SLURM_NODELIST']], check=True,
                               capture_output=True, text=True).stdout.split()
        os.environ['MASTER_ADDR'] = hosts[0]
    os.environ.setdefault('MASTER_PORT', '29500')
    os.environ['RANK'] = os.environ['SLURM_PROCID']
    os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
    os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', '0')


def setup_cpu_distributed(cfg: Config, launcher: str) -> None:
    """On a machine without CUDA, start the gloo process group and the CPU-capable DDP wrapper.

    Does nothing when CUDA is available or ``launcher`` is ``'none'``: mmengine's own path is right there.
    """
    if launcher == 'none' or torch.cuda.is_available():
        return
    if launcher == 'slurm':
        export_slurm_environment()
    elif launcher != 'pytorch':
        raise RuntimeError(f'Launcher {launcher!r} needs CUDA on this version of mmengine; on a CPU-only machine '
                           "use '--launcher pytorch' (tools/dist_train.sh) or '--launcher slurm' "
                           '(tools/slurm_train.sh).')
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    wrapper = cfg.get('model_wrapper_cfg') or {}
    if wrapper.get('type', 'MMDistributedDataParallel') in ('MMDistributedDataParallel',
                                                             'DistributedDataParallel'):
        cfg.model_wrapper_cfg = dict(wrapper, type='mmlightvit.CPUDistributedDataParallel')
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo', init_method='env://', rank=int(os.environ['RANK']),
                                world_size=int(os.environ['WORLD_SIZE']))


def finish_distributed() -> None:
    """End a distributed run cleanly: wait for every rank, then destroy the process group.

    Left to the interpreter's exit, the gloo process group is torn down while other ranks may already be gone,
    and its C++ threads can abort the process ("terminate called without an active exception", SIGABRT) after
    the job has printed its results.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
