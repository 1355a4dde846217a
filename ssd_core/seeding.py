"""Random streams a run owns: generators derived from ``(seed, stream, *keys)``, never the
process-wide ones, so runs that share a process (threads of one server) cannot disturb
each other's draws and a resumed run can recompute any draw from where it stands.

``derive_seed(seed, AUGMENT, epoch, position)`` is a pure function: the same arguments give the
same 63-bit seed on every machine and in every thread.
"""

from __future__ import annotations

import numpy as np
import torch

# Stream numbers: one per kind of draw, so two kinds never share a sequence.
INIT, SHUFFLE, AUGMENT, DEVICE_AUGMENT, LOADER, PREVIEW = range(1, 7)


def derive_seed(seed: int, *keys: int) -> int:
    """A seed in [0, 2**63) mixed from ``seed`` and integer ``keys`` (numpy's SeedSequence)."""
    words = [int(seed) % 2**64] + [int(k) % 2**64 for k in keys]
    state = np.random.SeedSequence(words).generate_state(2, np.uint64)
    return int(state[0] >> np.uint64(1))


def torch_generator(seed: int, *keys: int, device="cpu") -> torch.Generator:
    """A torch.Generator on ``device`` seeded with ``derive_seed(seed, *keys)``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(seed, *keys))
    return gen


def numpy_generator(seed: int | None, *keys: int) -> np.random.Generator:
    """A numpy Generator from ``derive_seed(seed, *keys)``; ``seed`` None draws fresh entropy
    from the operating system (not a process-wide generator)."""
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng(derive_seed(seed, *keys))


def fresh_seed() -> int:
    """A seed from the operating system's entropy, for draws nobody asked to reproduce."""
    return int(np.random.SeedSequence().generate_state(2, np.uint64)[0] >> np.uint64(1))
