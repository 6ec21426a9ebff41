"""Generated training sets: two interleaving half-moons, by NumPy alone, from a seed.

`templates/moons.toml` holds `two_moons()`'s points (the tests regenerate them and compare), so
a network file stays plain data while the preset's origin stays reproducible:

    outer moon (t = 0): (cos θ, sin θ)               θ evenly spaced over [0, π]
    inner moon (t = 1): (1 − cos θ, 1/2 − sin θ)
    each point moved by N(0, noise²) per coordinate, then centred and scaled into about [−1, 1]
    (x − 1/2, 2·y − 1/2) / 1.5, rounded to 3 decimals so the file reads well.
"""

from __future__ import annotations

import numpy as np

MOONS_POINTS = 40
MOONS_NOISE = 0.1
MOONS_SEED = 7


def two_moons(
    points: int = MOONS_POINTS, noise: float = MOONS_NOISE, seed: int = MOONS_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """(inputs (points, 2), targets (points, 1)): half the points per moon, interleaved
    outer, inner, outer, … so that any prefix of the list holds both classes."""
    half = points // 2
    theta = np.linspace(0.0, np.pi, half)
    outer = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    inner = np.stack([1 - np.cos(theta), 0.5 - np.sin(theta)], axis=1)
    x = np.empty((2 * half, 2))
    x[0::2], x[1::2] = outer, inner
    t = np.tile([[0.0], [1.0]], (half, 1))
    x = x + np.random.default_rng(seed).normal(0.0, noise, x.shape)
    x = np.stack([x[:, 0] - 0.5, 2 * x[:, 1] - 0.5], axis=1) / 1.5
    return np.round(x, 3), t


def toml_rows(table: np.ndarray) -> str:
    """A table as a TOML array of rows, numbers as short as they read back exactly."""
    return "[" + ", ".join("[" + ", ".join(f"{v:g}" for v in row) + "]" for row in table) + "]"


if __name__ == "__main__":  # python -m backprop_xlsx.mlp.datasets: the moons preset's data
    inputs, targets = two_moons()
    print(f"inputs      = {toml_rows(inputs)}")
    print(f"targets     = {toml_rows(targets)}")
