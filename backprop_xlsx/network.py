"""The 2-2-2 sigmoid network in NumPy, written the way the equations read.

Every function takes scalars or NumPy arrays and broadcasts, so one call can run many learning
rates (or many random networks) at once. The operations are done in the same order as the
workbook's formulas, so NumPy and a spreadsheet agree to the last bit or two.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

WEIGHTS = ("w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8")
INPUTS = ("i1", "i2", "t1", "t2")
PARAMS = INPUTS + WEIGHTS
GRADIENTS = tuple(f"dE_d{w}" for w in WEIGHTS)

# Every quantity of one iteration, in the order of the workbook's columns.
QUANTITIES = (
    "t1", "t2", "i1", "i2",
    "w1", "w2", "w3", "w4", "h1", "a_h1", "h2", "a_h2",
    "w5", "w6", "w7", "w8", "o1", "a_o1", "o2", "a_o2",
    "E1", "E2", "E_total",
    *GRADIENTS,
)  # fmt: skip


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def forward_backward(p: Mapping[str, np.ndarray | float]) -> dict[str, np.ndarray]:
    """One iteration: the forward pass, the error, and ∂E_total/∂w for all eight weights."""
    i1, i2, t1, t2 = (np.asarray(p[k], dtype=np.float64) for k in INPUTS)
    w1, w2, w3, w4, w5, w6, w7, w8 = (np.asarray(p[k], dtype=np.float64) for k in WEIGHTS)

    # forward: input -> hidden -> output
    h1 = w1 * i1 + w2 * i2
    a_h1 = sigmoid(h1)
    h2 = w3 * i1 + w4 * i2
    a_h2 = sigmoid(h2)
    o1 = w5 * a_h1 + w6 * a_h2
    a_o1 = sigmoid(o1)
    o2 = w7 * a_h1 + w8 * a_h2
    a_o2 = sigmoid(o2)

    # error
    E1 = 0.5 * (t1 - a_o1) ** 2
    E2 = 0.5 * (t2 - a_o2) ** 2
    E_total = E1 + E2

    # backward: ∂E/∂o = ∂E/∂a_o · ∂a_o/∂o, then the chain rule down to every weight
    dE_do1 = (a_o1 - t1) * a_o1 * (1 - a_o1)
    dE_do2 = (a_o2 - t2) * a_o2 * (1 - a_o2)
    dE_dw5 = dE_do1 * a_h1
    dE_dw6 = dE_do1 * a_h2
    dE_dw7 = dE_do2 * a_h1
    dE_dw8 = dE_do2 * a_h2
    dE_dw1 = (dE_do1 * w5 + dE_do2 * w7) * a_h1 * (1 - a_h1) * i1
    dE_dw2 = (dE_do1 * w5 + dE_do2 * w7) * a_h1 * (1 - a_h1) * i2
    dE_dw3 = (dE_do1 * w6 + dE_do2 * w8) * a_h2 * (1 - a_h2) * i1
    dE_dw4 = (dE_do1 * w6 + dE_do2 * w8) * a_h2 * (1 - a_h2) * i2

    values = locals()
    return {name: np.broadcast_to(values[name], E_total.shape).copy() for name in QUANTITIES}


def gradient_step(
    p: Mapping[str, np.ndarray | float], grads: Mapping[str, np.ndarray], eta: np.ndarray | float
) -> dict[str, np.ndarray]:
    """w ← w − η·∂E_total/∂w for all eight weights at once, from the same iteration."""
    new = {k: np.asarray(p[k], dtype=np.float64) for k in INPUTS}
    for w in WEIGHTS:
        new[w] = p[w] - eta * grads[f"dE_d{w}"]
    return new


def train(
    start: Mapping[str, float], etas: Sequence[float] | np.ndarray, steps: int
) -> dict[str, np.ndarray]:
    """All iterations for every learning rate: each array has shape (steps + 1, len(etas)).

    Row 0 holds the initial weights; row k the weights after k gradient-descent updates.
    """
    eta = np.asarray(etas, dtype=np.float64)
    p: dict[str, np.ndarray] = {k: np.full(eta.shape, float(start[k])) for k in PARAMS}
    history = {name: np.empty((steps + 1, eta.size)) for name in QUANTITIES}
    for k in range(steps + 1):
        row = forward_backward(p)
        for name, value in row.items():
            history[name][k] = value
        p = gradient_step(row, row, eta)
    return history
