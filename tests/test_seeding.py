"""Random streams a run owns (ssd_core.seeding) and the seeded model construction."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from ssd_core import build_model
from ssd_core.data import Augment, make_loader
from ssd_core.model import TinySSD, init_parameters, seeded, seeded_tinyssd
from ssd_core.seeding import AUGMENT, INIT, derive_seed, torch_generator
from tests.helpers import tiny_config, tiny_set


def test_derive_seed_is_a_pure_function_of_its_arguments():
    # Fixed values: the same on every machine and numpy version that keeps SeedSequence.
    assert derive_seed(0, INIT) == derive_seed(0, INIT)
    seeds = {derive_seed(s, k, e) for s in range(4) for k in (INIT, AUGMENT) for e in range(4)}
    assert len(seeds) == 32 and all(0 <= x < 2**63 for x in seeds)
    assert derive_seed(-1, 2) == derive_seed(2**64 - 1, 2)  # negative seeds wrap, never fail


@pytest.mark.parametrize("make", [lambda: nn.Conv2d(3, 8, 3),
                                  lambda: nn.Conv2d(8, 4, 1, bias=False), lambda: nn.Linear(5, 7)])
def test_init_parameters_draws_what_pytorch_defaults_draw(make):
    """Same generator state, same numbers: PyTorch's reset_parameters from the global generator
    and init_parameters from a run's own generator seeded alike."""
    ref = make()
    torch.manual_seed(11)
    ref.reset_parameters()
    torch.manual_seed(0)  # whatever the global generator holds now does not matter
    mine = init_parameters(make(), torch.Generator().manual_seed(11))
    for a, b in zip(ref.parameters(), mine.parameters()):
        assert torch.equal(a, b)


def test_batchnorm_starts_at_ones_zeros_and_fresh_statistics():
    bn = seeded(lambda: nn.BatchNorm2d(6), torch.Generator().manual_seed(0))
    assert torch.equal(bn.weight, torch.ones(6)) and torch.equal(bn.bias, torch.zeros(6))
    assert torch.equal(bn.running_mean, torch.zeros(6))
    assert torch.equal(bn.running_var, torch.ones(6))
    assert int(bn.num_batches_tracked) == 0


def test_unknown_layers_with_parameters_are_refused():
    with pytest.raises(TypeError, match="Embedding"):
        init_parameters(nn.Embedding(4, 2), torch.Generator())


def test_seeded_tinyssd_leaves_the_global_generator_alone_and_repeats_in_threads():
    torch.manual_seed(5)
    state = torch.get_rng_state()
    net = seeded_tinyssd(2, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert isinstance(net, TinySSD) and all(p.device.type == "cpu" for p in net.parameters())
    out = {}
    threads = [threading.Thread(target=lambda k=k: out.__setitem__(k, seeded_tinyssd(2, seed=3)))
               for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for other in out.values():
        for a, b in zip(net.state_dict().values(), other.state_dict().values()):
            assert torch.equal(a, b)
    assert not torch.equal(net.blks[1][0].weight, seeded_tinyssd(2, seed=4).blks[1][0].weight)


def test_build_model_starts_from_the_runs_seed():
    a, b = build_model(tiny_config(seed=9), 1), seeded_tinyssd(
        1, 9, base_channels=(8, 16, 16), channels=16)
    for x, y in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(x, y)
    # Kaiming-uniform with a=sqrt(5): |w| <= 1/sqrt(fan_in), and it spreads out to that bound.
    w = a.blks[1][0].weight
    bound = 1 / (w[0].numel() ** 0.5)
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound


def test_make_loader_with_a_seed_repeats_order_and_augmentation():
    ds = tiny_set(8)
    ds.set_augment(Augment(hflip=0.5, iou_crop=0.5, zoom_out=0.5, photometric=0.5))

    def epochs(seed):
        loader = make_loader(ds, batch_size=4, seed=seed)
        torch.manual_seed(0)
        first = [X for X, _ in loader]
        torch.manual_seed(0)
        second = [X for X, _ in loader]
        return first, second

    a1, a2 = epochs(1)
    b1, b2 = epochs(1)
    assert all(torch.equal(x, y) for x, y in zip(a1 + a2, b1 + b2))
    assert any(not torch.equal(x, y) for x, y in zip(a1, a2))  # epoch 2 draws anew
    c1, _ = epochs(2)
    assert any(not torch.equal(x, y) for x, y in zip(a1, c1))


def test_torch_generator_streams_differ():
    a = torch.rand(4, generator=torch_generator(1, INIT))
    b = torch.rand(4, generator=torch_generator(1, AUGMENT))
    assert not torch.equal(a, b)
    assert torch.equal(a, torch.rand(4, generator=torch_generator(1, INIT)))
