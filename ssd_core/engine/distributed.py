"""Several processes under torchrun: this process's rank, the process group (joined and left),
the model wrapped in DistributedDataParallel, and the collectives the loop needs; alone (no
torchrun) every call is a no-op."""

from __future__ import annotations

import os

import torch
from torch import nn

from ssd_core.config import TrainConfig


def dist_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return 0, 1, 0
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def join_process_group(config: TrainConfig, world_size: int):
    """-> (torch.distributed or None, whether this call created the group)."""
    if world_size <= 1:
        return None, False
    import torch.distributed as dist  # only under torchrun: it is slow to import

    own = not dist.is_initialized()
    if own:
        dist.init_process_group(
            "nccl" if torch.cuda.is_available() and config.device != "cpu" else "gloo")
    return dist, own


class Processes:
    """This process among the run's processes: ``rank``, ``world_size`` and ``local_rank`` from
    torchrun's environment; ``dist`` (torch.distributed) once :meth:`join` found several."""

    def __init__(self):
        self.rank, self.world_size, self.local_rank = dist_env()
        self.dist = None
        self._own_group = False

    def join(self, config: TrainConfig) -> None:
        self.dist, self._own_group = join_process_group(config, self.world_size)

    def leave(self, together: bool = True) -> None:
        """Destroy the process group if :meth:`join` created it, once every process is here.

        The caller drops its DistributedDataParallel wrapper first: the wrapper holds the group,
        and a group that outlives ``destroy_process_group`` is torn down during interpreter
        exit, where gloo's threads abort the process ("terminate called without an active
        exception", rank 1 of the CPU torchrun test, once in CI). ``together=False`` (this
        process failed alone) skips the barrier, which would wait for the others for ever."""
        if self.dist is None or not self._own_group:
            return
        import gc

        if together:
            self.dist.barrier()  # no process tears down while another still sends
        gc.collect()  # a reference cycle may hold the wrapper, and with it the group
        self.dist.destroy_process_group()
        self.dist = None

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """The model as the loop calls it: DistributedDataParallel across processes."""
        if self.dist is None:
            return model
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def sum(self, t: torch.Tensor) -> None:
        """All-reduce ``t`` in place (a sum over processes)."""
        if self.dist is not None:
            self.dist.all_reduce(t)

    def any(self, flag: bool) -> bool:
        """Whether any process's ``flag`` is set (a collective: every process must call it)."""
        if self.dist is None:
            return flag
        t = torch.tensor([1.0 if flag else 0.0])
        self.dist.all_reduce(t)
        return bool(t.item() > 0)
