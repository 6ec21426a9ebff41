"""GapDropout against the coin-per-element dropout it replaces (mnist/dropout.py)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from mnist.dropout import GapDropout, dropped_positions
from mnist.model import SeedNet

pytestmark = pytest.mark.torch  # see TORCH_MODULES in conftest.py


def drop_counts(n: int, p: float, draws: int, draw: int | None = None) -> torch.Tensor:
    """How often each of n positions was dropped over `draws` masks."""
    counts = torch.zeros(n, dtype=torch.int64)
    for _ in range(draws):
        pos = dropped_positions(n, p, draw)
        assert torch.all(pos[1:] > pos[:-1]) and (len(pos) == 0 or 0 <= pos[0] <= pos[-1] < n)
        counts[pos] += 1
    return counts


@pytest.mark.parametrize("p, draw", [(0.02, None), (0.3, None), (0.9, None), (0.3, 1)])
def test_every_position_drops_with_probability_p(p: float, draw: int | None) -> None:
    """First and last positions included, also when the gaps come one at a time (draw=1),
    which forces the top-up loop: each count is Binomial(draws, p), here within 5 σ."""
    torch.manual_seed(0)
    n, draws = 40, 3000
    counts = drop_counts(n, p, draws, draw).double()
    sigma = math.sqrt(draws * p * (1 - p))
    assert torch.all((counts - draws * p).abs() < 5 * sigma), counts


def test_drops_are_independent_of_their_neighbours() -> None:
    """Adjacent pairs drop together with probability p², as independent coins do; a sampler
    that spread its drops evenly (or clumped them) would not."""
    torch.manual_seed(1)
    n, p = 2_000_000, 0.02
    mask = torch.zeros(n, dtype=torch.bool)
    mask[dropped_positions(n, p)] = True
    both = (mask[1:] & mask[:-1]).sum().item()
    expected = (n - 1) * p * p
    assert abs(both - expected) < 5 * math.sqrt(expected)
    assert abs(mask.sum().item() - n * p) < 5 * math.sqrt(n * p * (1 - p))


def test_forward_and_backward_match_nn_dropout_semantics() -> None:
    """Kept elements scaled by 1/(1-p), dropped ones zero, and the gradient is the same mask
    (autograd through x · mask)."""
    torch.manual_seed(2)
    p = 0.25
    x = torch.randn(64, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    out = GapDropout(p).train()(x)
    assert out.is_contiguous(memory_format=torch.channels_last)
    kept = out != 0
    assert torch.allclose(out[kept], x[kept] / (1 - p))
    assert abs(kept.double().mean().item() - (1 - p)) < 0.01
    out.backward(torch.ones_like(out))
    assert torch.equal(x.grad, kept.to(x.dtype) / (1 - p))


def test_eval_and_edge_rates_are_nn_dropouts() -> None:
    x = torch.randn(3, 4, 5, 5)
    assert torch.equal(GapDropout(0.5).eval()(x), x)
    assert torch.equal(GapDropout(0.0).train()(x), x)
    assert torch.equal(GapDropout(1.0).train()(x), torch.zeros_like(x))


def test_seeded_masks_repeat() -> None:
    x = torch.ones(10_000)
    torch.manual_seed(7)
    a = GapDropout(0.1).train()(x)
    torch.manual_seed(7)
    assert torch.equal(GapDropout(0.1).train()(x), a)


def test_seed_net_uses_it_and_the_baseline_keeps_its_own() -> None:
    ours = [m for m in SeedNet().modules() if isinstance(m, nn.Dropout)]
    seeds = [m for m in SeedNet(drop_layer=nn.Dropout).modules() if isinstance(m, nn.Dropout)]
    assert len(ours) == len(seeds) == 3
    assert all(type(m) is GapDropout and m.p == 0.02 for m in ours)
    assert all(type(m) is nn.Dropout for m in seeds)
