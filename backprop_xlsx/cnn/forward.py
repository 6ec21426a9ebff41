"""The CNN sheets' forward pass in NumPy float64: what every cell of `MNIST net` must hold.

Computed from the numbers a workbook holds (its own weights sheet, its own picked image), never
from a checkpoint: bpxl's core has no torch, and the verifier proves the formulas compute *this*
net. BatchNorm is folded as the weights sheet folds it (s = γ/√(var + ε), b′ = β + s·(bias −
mean)); a max-pool signed by a conv's BatchNorm takes the min where the scale is negative (see
layout.py). Sizes are tiny (≈ 1.4 M multiply-adds), so plain einsum over sliding windows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from backprop_xlsx.cnn.layout import Arch, Conv


@dataclass
class ConvParams:
    """One conv as the weights sheet holds it; BatchNorm arrays are None without BatchNorm."""

    weight: np.ndarray  # (c_out, c_in, k, k)
    bias: np.ndarray | None = None  # the conv's own bias (c_out,)
    gamma: np.ndarray | None = None
    beta: np.ndarray | None = None
    mean: np.ndarray | None = None
    var: np.ndarray | None = None
    eps: np.ndarray | None = None  # per channel, as the sheet has one ε cell per channel

    def scale(self) -> np.ndarray | None:
        if self.gamma is None:
            return None
        return self.gamma / np.sqrt(self.var + self.eps)

    def folded(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(w·s, b′) with BatchNorm; (w, bias) without."""
        s = self.scale()
        if s is None:
            return self.weight, self.bias
        conv_bias = 0.0 if self.bias is None else self.bias
        return self.weight * s[:, None, None, None], self.beta + s * (conv_bias - self.mean)


@dataclass
class Weights:
    convs: dict[str, ConvParams]
    fc_weight: np.ndarray | None = None  # (10, c_in), as torch's nn.Linear
    fc_bias: np.ndarray | None = None


@dataclass
class Forward:
    """Every value of the net sheet for one image."""

    x: np.ndarray  # (1, 28, 28) normalised input
    maps: list[np.ndarray] = field(default_factory=list)  # each stage's (C, H, W)
    gap: np.ndarray | None = None
    logits: np.ndarray | None = None
    exps: np.ndarray | None = None
    probs: np.ndarray | None = None
    predicted: int = -1


def conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """'valid' cross-correlation, stride 1: out[o] = Σ_c Σ_window x[c]·w[o, c] + bias[o]."""
    k = weight.shape[-1]
    windows = sliding_window_view(x, (k, k), axis=(1, 2))  # (C, H′, W′, k, k)
    out = np.einsum("chwij,ocij->ohw", windows, weight)
    return out if bias is None else out + bias[:, None, None]


def pool2d(x: np.ndarray, k: int, signs: np.ndarray | None = None) -> np.ndarray:
    """k×k max-pool, stride k (floor); min-pool on the channels whose sign is not > 0."""
    c, h = x.shape[:2]
    n = h // k
    windows = x[:, : n * k, : n * k].reshape(c, n, k, n, k)
    out = windows.max(axis=(2, 4))
    if signs is not None:
        low = windows.min(axis=(2, 4))
        out = np.where((signs > 0)[:, None, None], out, low)
    return out


def forward(arch: Arch, weights: Weights, pixels: np.ndarray, mean: float, std: float) -> Forward:
    """The picked image (784 raw pixel values) through the net, exactly as the sheet computes."""
    with np.errstate(all="ignore"):  # a broken file's NaN and inf are reported, not raised
        x = ((np.asarray(pixels, np.float64) / 255 - mean) / std).reshape(1, 28, 28)
        result = Forward(x)
        a = x
        for stage in arch.stages:
            if isinstance(stage, Conv):
                a = conv2d(a, *weights.convs[stage.name].folded())
            else:
                signs = None
                if stage.signed_by is not None:
                    signs = weights.convs[stage.signed_by].scale()
                a = pool2d(a, stage.k, signs)
            if stage.relu:
                a = np.maximum(a, 0.0)
            result.maps.append(a)
        result.gap = a.mean(axis=(1, 2))
        result.logits = result.gap
        if arch.fc is not None:
            result.logits = weights.fc_weight @ result.gap + weights.fc_bias
        result.exps = np.exp(result.logits - result.logits.max())
        result.probs = result.exps / result.exps.sum()
        result.predicted = int(np.argmax(result.probs))
    return result
