"""Dropout that draws the gaps between dropped elements instead of a coin per element.

Why: `nn.Dropout` draws one Bernoulli per element with `bernoulli_`, which ATen runs serially,
element by element, on any CPU but Intel's (its MKL path checks `cpuinfo_vendor_intel`). The seed
net's three masks per batch of 128 digits hold 2.3 M elements. In a row of independent
Bernoulli(p) drops, the gaps between drops are independent Geometric(p), so drawing those gaps
(≈ p·n numbers, 46 k at p = 0.02) gives masks with exactly the same distribution from 50 times
fewer draws (the three masks, forward and backward, on a 2-core AMD CPU: 5.0 ms against
nn.Dropout's 13.5 ms; `benchmarks/bench_dropout.py`). On other devices nn.Dropout's fused
kernel is already fast and is used as it is.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn


def dropped_positions(n: int, p: float, draw: int | None = None) -> torch.Tensor:
    """Indices in [0, n) of the elements a Bernoulli(p) coin per element would drop, in order.

    The k-th drop sits at G_1 + … + G_k - 1 with G_i ~ Geometric(p) (trials up to a success).
    Gaps are drawn `draw` at a time (default: 6 σ more than the p·n expected, so one draw
    nearly always reaches n) until they pass n, so no drop is ever missed.
    """
    enough = draw or math.ceil(n * p + 6 * math.sqrt(n * p) + 16)
    ends = torch.empty(enough, dtype=torch.int64).geometric_(p).cumsum_(0).sub_(1)
    parts = [ends]
    while int(ends[-1]) < n:
        ends = torch.empty(enough, dtype=torch.int64).geometric_(p).cumsum_(0).add_(ends[-1])
        parts.append(ends)
    pos = torch.cat(parts)
    return pos[: int(torch.searchsorted(pos, n))]


class GapDropout(nn.Dropout):
    """`nn.Dropout(p)`, same masks in distribution and same scaling by 1/(1-p), with the
    masks of a CPU tensor drawn by `dropped_positions`."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or self.p == 1 or x.device.type != "cpu":
            return super().forward(x)
        mask = torch.empty_like(x).fill_(1 / (1 - self.p))  # in x's memory layout
        flat = mask.as_strided((x.numel(),), (1,))  # its elements in memory order
        flat.index_fill_(0, dropped_positions(x.numel(), self.p), 0)
        return x * mask
