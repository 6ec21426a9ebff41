"""network.py against independent witnesses: torch.autograd and central finite differences,
each on many random networks at once (every function broadcasts over arrays)."""

from __future__ import annotations

import numpy as np

from backprop_xlsx import network
from backprop_xlsx.config import default_values

N = 2000  # random networks per test


def random_networks(seed: int, n: int = N) -> dict[str, np.ndarray]:
    """Inputs, targets and weights drawn independently, so t1 ≠ t2, i1 ≠ i2 and so on."""
    rng = np.random.default_rng(seed)
    p = {k: rng.uniform(-1.0, 1.0, n) for k in ("i1", "i2")}
    p |= {k: rng.uniform(0.0, 1.0, n) for k in ("t1", "t2")}
    p |= {w: rng.uniform(-3.0, 3.0, n) for w in network.WEIGHTS}
    return p


def test_gradients_match_torch_autograd() -> None:
    import torch  # a test dependency: never skipped

    p = random_networks(1)
    mine = network.forward_backward(p)
    t = {
        k: torch.tensor(v, dtype=torch.float64, requires_grad=k in network.WEIGHTS)
        for k, v in p.items()
    }
    h1 = torch.sigmoid(t["w1"] * t["i1"] + t["w2"] * t["i2"])
    h2 = torch.sigmoid(t["w3"] * t["i1"] + t["w4"] * t["i2"])
    o1 = torch.sigmoid(t["w5"] * h1 + t["w6"] * h2)
    o2 = torch.sigmoid(t["w7"] * h1 + t["w8"] * h2)
    e_total = 0.5 * (t["t1"] - o1) ** 2 + 0.5 * (t["t2"] - o2) ** 2
    e_total.sum().backward()  # the networks are independent: the sum's gradient is each one's
    np.testing.assert_allclose(mine["E_total"], e_total.detach().numpy(), rtol=1e-14)
    for w in network.WEIGHTS:
        np.testing.assert_allclose(
            mine[f"dE_d{w}"], t[w].grad.numpy(), rtol=1e-12, atol=1e-17, err_msg=w
        )


def test_gradients_match_central_finite_differences() -> None:
    p = random_networks(2)
    grads = network.forward_backward(p)
    h = 1e-6
    for w in network.WEIGHTS:
        up = network.forward_backward(p | {w: p[w] + h})["E_total"]
        down = network.forward_backward(p | {w: p[w] - h})["E_total"]
        numeric = (up - down) / (2 * h)
        # central differences: error ~h²·E''' plus rounding ~eps·E/h, both far below 1e-8 here
        np.testing.assert_allclose(grads[f"dE_d{w}"], numeric, rtol=1e-6, atol=1e-9, err_msg=w)


def test_small_steps_decrease_the_error() -> None:
    p = random_networks(3, 500)
    eta = 0.05
    previous = network.forward_backward(p)["E_total"]
    for _ in range(30):
        row = network.forward_backward(p)
        p = network.gradient_step(row, row, eta)
        now = network.forward_backward(p)["E_total"]
        assert np.all(now <= previous + 1e-15)
        previous = now


def test_train_shapes_and_first_row() -> None:
    start = default_values()
    etas = [0.1, 0.5, 2.0]
    history = network.train(start, etas, 7)
    assert set(history) == set(network.QUANTITIES)
    for name, values in history.items():
        assert values.shape == (8, 3), name
    for k in network.PARAMS:
        np.testing.assert_array_equal(history[k][0], start[k])  # row 0: the initial weights
    # row 1: one gradient step from row 0, with each column's own η
    for w in network.WEIGHTS:
        np.testing.assert_allclose(
            history[w][1], start[w] - np.array(etas) * history[f"dE_d{w}"][0], rtol=1e-15
        )
    assert np.all(np.diff(history["E_total"], axis=0) < 0)  # the default network learns
