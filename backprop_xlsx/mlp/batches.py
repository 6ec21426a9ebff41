"""Mini-batches: which training samples each step of a mini-batch run sees.

Each epoch shuffles the S samples and cuts the shuffle into ⌊S/B⌋ batches of B, dropping the
last S mod B as PyTorch's `DataLoader(shuffle=True, batch_size=B, drop_last=True)` does, so every
row of a sheet has the same B columns per quantity. The shuffles are NumPy's PCG64
permutations, the same on every platform and NumPy ≥ 1.17, so a workbook's schedule can be
rebuilt from its seed (docs/workbook.md, "Mini-batches", shows the table on Setup).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from backprop_xlsx.mlp.network import Architecture, error_terms, forward

DEFAULT_SHUFFLE_SEED = 0


def batches_per_epoch(samples: int, batch_size: int) -> int:
    """nb = ⌊S / B⌋: the last S mod B samples of each shuffle are dropped."""
    return samples // batch_size


def epochs_for(steps: int, samples: int, batch_size: int) -> int:
    """How many epochs rows 0 … steps reach into: ⌊steps / nb⌋ + 1."""
    return steps // batches_per_epoch(samples, batch_size) + 1


def shuffles(samples: int, epochs: int, seed: int) -> np.ndarray:
    """(epochs, S): epoch e's permutation of the sample numbers 1 … S (row e − 1).

    One `default_rng(seed)`, `.permutation(S)` once per epoch in order: the same numbers on
    every platform and NumPy ≥ 1.17."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(samples) + 1 for _ in range(epochs)])


def step_batches(table: np.ndarray, batch_size: int, steps: int) -> np.ndarray:
    """(steps + 1, B): the 1-based sample numbers of every step's batch, from `shuffles`.

    Step k (row k of an LR sheet, iteration 0 included) is in epoch ⌊k / nb⌋ + 1 at position
    p = k mod nb, and takes the samples at positions p·B + 1 … p·B + B of that epoch's shuffle.
    Its gradient sums over them, as a full-batch step sums over all samples."""
    nb = batches_per_epoch(table.shape[1], batch_size)
    k = np.arange(steps + 1)
    columns = (k % nb)[:, None] * batch_size + np.arange(batch_size)
    return table[(k // nb)[:, None], columns]


def step_epochs(samples: int, batch_size: int, steps: int) -> np.ndarray:
    """(steps + 1,): the 1-based epoch of every step."""
    return np.arange(steps + 1) // batches_per_epoch(samples, batch_size) + 1


@dataclass(frozen=True)
class Batching:
    """A mini-batch run's schedule: batch size, seed, and the epochs its table covers."""

    batch_size: int
    seed: int
    epochs: int

    def table(self, samples: int, steps: int = 0) -> np.ndarray:
        """The Setup sheet's table: (epochs, S) sample numbers, 1-based; with `steps`, as many
        more epochs of the same generator as rows 0 … steps reach (a sheet longer than its
        table, which only a damaged workbook has: its INDEX past the table is #REF!)."""
        epochs = max(self.epochs, epochs_for(steps, samples, self.batch_size))
        return shuffles(samples, epochs, self.seed)


@dataclass
class FullPass:
    """The forward pass of every training sample with each step's parameters."""

    a: list[np.ndarray]  # a[l + 1] = f(z[l]); each (steps + 1, ..., S, n)
    E: np.ndarray  # (steps + 1, ..., S): each sample's error, summed over the outputs
    E_train: np.ndarray  # (steps + 1, ...): the loss on the whole training set


def full_pass(
    net: Architecture,
    x: np.ndarray,
    t: np.ndarray,
    W: Sequence[np.ndarray],
    b: Sequence[np.ndarray | None],
) -> FullPass:
    """The forward pass of all S samples for every step at once: W[l] (steps + 1, ..., n, m)
    from a History, x (..., S, n_in) and t (..., S, n_out) the training set."""
    z, a = forward(net, x, W, b)
    terms = error_terms(net.loss, z[-1], a[-1], t)
    E = terms[..., 0]
    for j in range(1, terms.shape[-1]):
        E = E + terms[..., j]  # left to right, as the sheet's sum
    E_train = E[..., 0]
    for s in range(1, E.shape[-1]):
        E_train = E_train + E[..., s]
    return FullPass(a, E, E_train)
