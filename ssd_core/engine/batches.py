"""The training batches of every epoch: each process's share of the data (DistributedSampler),
from the set held on the device or through a DataLoader (its workers kept for whole epochs).
Every draw comes from the run's seed and the batch's place in the run, so a resumed run
recomputes them and no other thread's use of a shared generator can change them."""

from __future__ import annotations

import math

import torch

from ssd_core.config import TrainConfig
from ssd_core.data import ItemSeeds, detection_collate, takes_item_seeds
from ssd_core.seeding import LOADER, derive_seed, torch_generator


class SkipSampler(torch.utils.data.Sampler):
    """The base sampler's indices minus the first ``skip`` (resuming mid-epoch)."""

    def __init__(self, base, skip: int):
        self.base, self.skip = base, skip

    def __iter__(self):
        return iter(list(self.base)[self.skip:])

    def __len__(self):
        return max(0, len(self.base) - self.skip)


class EpochBatches:
    """Batches ``(X (B,3,S,S), Y (B,M,5))`` of ``data`` for process ``rank`` of ``world_size``;
    ``on_device``: the set rendered onto the device (ssd_core.data.device_data) or None."""

    def __init__(self, data, config: TrainConfig, rank: int, world_size: int,
                 device: torch.device, on_device=None):
        self.data, self.config, self.rank, self.device = data, config, rank, device
        self.on_device = on_device
        self.sampler = torch.utils.data.DistributedSampler(
            data, num_replicas=world_size, rank=rank, shuffle=True, seed=config.seed,
            drop_last=False)
        self.steps_per_epoch = math.ceil(len(self.sampler) / config.batch_size)
        self.item_seeds = takes_item_seeds(data)  # data[(i, seed)] works
        self.workers_loader = None  # with workers: one DataLoader kept for every whole epoch

    def epoch(self, epoch: int, skip_batches: int, num_workers: int):
        """The epoch's batches after its first ``skip_batches`` (the sampler's order from
        (seed, epoch); an item's augmentation from (seed, epoch, rank, position))."""
        cfg = self.config
        self.sampler.set_epoch(epoch)
        sampler = self.sampler
        if self.on_device is not None:  # batches indexed and augmented on the device
            order = list(sampler)[skip_batches * cfg.batch_size:]
            return self.on_device.batches(
                order, cfg.batch_size, seed=derive_seed(cfg.seed, epoch, self.rank),
                first_batch=skip_batches)
        if self.item_seeds:
            sampler = ItemSeeds(sampler, cfg.seed, keys=(self.rank,))  # epoch: the sampler's
        if skip_batches:
            sampler = SkipSampler(sampler, skip_batches * cfg.batch_size)
        if num_workers and not skip_batches:
            # Workers started once, not every epoch: the loader asks the sampler for the new
            # epoch's order each time it is iterated (ItemSeeds reads the sampler's epoch).
            if self.workers_loader is None:
                self.workers_loader = self._loader(sampler, num_workers, persistent=True)
            return self.workers_loader
        return self._loader(sampler, num_workers)

    def close(self) -> None:
        """Let the kept loader's worker processes end."""
        self.workers_loader = None

    def _loader(self, sampler, num_workers: int, persistent=False):
        # Its own generator: DataLoader would otherwise draw worker seeds from torch's global one.
        return torch.utils.data.DataLoader(
            self.data, batch_size=self.config.batch_size, sampler=sampler,
            collate_fn=detection_collate, num_workers=num_workers,
            pin_memory=self.device.type == "cuda", drop_last=False,
            persistent_workers=persistent, generator=torch_generator(self.config.seed, LOADER))
