"""The ravine preset shows what it says: at one η, plain gradient descent crawls and momentum and
Adam do not; NumPy's runs (the workbook's values) and torch.optim's witness it."""

from __future__ import annotations

import numpy as np
import pytest

from backprop_xlsx.mlp import description
from backprop_xlsx.mlp.layout import SheetLayout

ETA, STEPS = 0.04, 200


def numpy_e_total(optimizer: str) -> np.ndarray:
    nw = description.preset("ravine")
    sheet = SheetLayout(nw, optimizer=optimizer)
    setup = {e.key: e.value for e in sheet.setup}
    return sheet.run(setup, [ETA], STEPS)["E_total"][:, 0]


def torch_e_total(optimizer: str) -> np.ndarray:
    import torch

    nw = description.preset("ravine")
    x, t = torch.tensor(nw.inputs), torch.tensor(nw.targets)
    w = torch.tensor(nw.W[0], requires_grad=True)
    opt = {
        "sgd": lambda: torch.optim.SGD([w], lr=ETA),
        "momentum": lambda: torch.optim.SGD([w], lr=ETA, momentum=0.9),
        "adam": lambda: torch.optim.Adam([w], lr=ETA),
    }[optimizer]()
    out = []
    for _ in range(STEPS + 1):
        opt.zero_grad()
        E = (0.5 * (t - x @ w.T) ** 2).sum()
        out.append(E.item())
        E.backward()
        opt.step()
    return np.array(out)


def first_below(e: np.ndarray, threshold: float = 1e-3) -> int | None:
    below = np.flatnonzero(e < threshold)
    return int(below[0]) if below.size else None


def test_the_valley_is_narrow() -> None:
    """Curvature across the valley is hundreds of times that along it (the Hessian XᵀX)."""
    x = np.array(description.preset("ravine").inputs)
    low, high = np.linalg.eigvalsh(x.T @ x)
    assert high / low > 300
    assert ETA < 2 / high  # plain gradient descent is stable at this η


@pytest.mark.torch
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_numpy_is_torch_optim_on_the_ravine(optimizer: str) -> None:
    np.testing.assert_allclose(
        numpy_e_total(optimizer), torch_e_total(optimizer), rtol=1e-9, atol=1e-15
    )


def test_sgd_crawls_where_momentum_and_adam_do_not() -> None:
    sgd, momentum, adam = (numpy_e_total(o) for o in ("sgd", "momentum", "adam"))
    assert first_below(sgd) is None and sgd[-1] > 0.1
    assert first_below(momentum) is not None and first_below(momentum) < 100
    assert first_below(adam) is not None and first_below(adam) < STEPS
    assert momentum[-1] < 1e-6 and adam[-1] < 1e-6
