"""network.py against independent witnesses: torch.autograd and central finite differences,
each on many random networks at once (every function broadcasts over arrays)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from _seed import seed_values

from backprop_xlsx.mlp import network

N = 2000  # random networks per test


def random_networks(seed: int, n: int = N) -> dict[str, np.ndarray]:
    """Inputs, targets and weights drawn independently, so t1 ≠ t2, i1 ≠ i2 and so on."""
    rng = np.random.default_rng(seed)
    p = {k: rng.uniform(-1.0, 1.0, n) for k in ("i1", "i2")}
    p |= {k: rng.uniform(0.0, 1.0, n) for k in ("t1", "t2")}
    p |= {w: rng.uniform(-3.0, 3.0, n) for w in network.WEIGHTS}
    return p


def seed_arrays(
    p: dict[str, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], list[None]]:
    """The seed's named values as the general API takes them: x and t (..., 1, 2),
    W1 = [[w1, w2], [w3, w4]] and W2 = [[w5, w6], [w7, w8]] (..., 2, 2), no biases."""

    def m(rows: list[tuple[str, ...]]) -> np.ndarray:
        return np.stack([np.stack([p[n] for n in row], axis=-1) for row in rows], axis=-2)

    W = [m([("w1", "w2"), ("w3", "w4")]), m([("w5", "w6"), ("w7", "w8")])]
    return m([("i1", "i2")]), m([("t1", "t2")]), W, [None, None]


def by_name(dE_dW: list[np.ndarray]) -> dict[str, np.ndarray]:
    """∂E/∂w1 … ∂E/∂w8 from the two gradient matrices, row by row as the names number them."""
    entries = [g[..., r, c] for g in dE_dW for r in range(2) for c in range(2)]
    return dict(zip(network.WEIGHTS, entries, strict=True))


def e_total(p: dict[str, np.ndarray]) -> np.ndarray:
    return network.backprop(network.SEED, *seed_arrays(p)).E_total


@pytest.mark.torch
def test_gradients_match_torch_autograd() -> None:
    import torch  # a test dependency: never skipped

    p = random_networks(1)
    run = network.backprop(network.SEED, *seed_arrays(p))
    mine = by_name(run.dE_dW)
    t = {
        k: torch.tensor(v, dtype=torch.float64, requires_grad=k in network.WEIGHTS)
        for k, v in p.items()
    }
    h1 = torch.sigmoid(t["w1"] * t["i1"] + t["w2"] * t["i2"])
    h2 = torch.sigmoid(t["w3"] * t["i1"] + t["w4"] * t["i2"])
    o1 = torch.sigmoid(t["w5"] * h1 + t["w6"] * h2)
    o2 = torch.sigmoid(t["w7"] * h1 + t["w8"] * h2)
    e = 0.5 * (t["t1"] - o1) ** 2 + 0.5 * (t["t2"] - o2) ** 2
    e.sum().backward()  # the networks are independent: the sum's gradient is each one's
    np.testing.assert_allclose(run.E_total, e.detach().numpy(), rtol=1e-14)
    for w in network.WEIGHTS:
        np.testing.assert_allclose(mine[w], t[w].grad.numpy(), rtol=1e-12, atol=1e-17, err_msg=w)


def test_gradients_match_central_finite_differences() -> None:
    p = random_networks(2)
    grads = by_name(network.backprop(network.SEED, *seed_arrays(p)).dE_dW)
    h = 1e-6
    for w in network.WEIGHTS:
        up = e_total(p | {w: p[w] + h})
        down = e_total(p | {w: p[w] - h})
        numeric = (up - down) / (2 * h)
        # central differences: error ~h²·E''' plus rounding ~eps·E/h, both far below 1e-8 here
        np.testing.assert_allclose(grads[w], numeric, rtol=1e-6, atol=1e-9, err_msg=w)


def test_small_steps_decrease_the_error() -> None:
    x, t, W, b = seed_arrays(random_networks(3, 500))
    eta = 0.05
    previous = network.backprop(network.SEED, x, t, W, b).E_total
    for _ in range(30):
        W = network.descend(W, network.backprop(network.SEED, x, t, W, b).dE_dW, eta)
        now = network.backprop(network.SEED, x, t, W, b).E_total
        assert np.all(now <= previous + 1e-15)
        previous = now


def test_train_shapes_and_first_row() -> None:
    start = {k: np.float64(v) for k, v in seed_values().items()}
    x, t, W, b = seed_arrays(start)
    etas = np.array([0.1, 0.5, 2.0])
    history = network.train_network(network.SEED, x, t, W, b, etas, 7)
    for w_l, start_l in zip(history.W, W, strict=True):
        assert w_l.shape == (8, 3, 2, 2)
        np.testing.assert_array_equal(w_l[0], np.broadcast_to(start_l, (3, 2, 2)))  # row 0
        # row 1: one gradient step from row 0, with each learning rate's own η
    for w_l, g_l in zip(history.W, history.dE_dW, strict=True):
        np.testing.assert_allclose(w_l[1], w_l[0] - etas[:, None, None] * g_l[0], rtol=1e-15)
    assert history.E_total.shape == (8, 3)
    assert np.all(np.diff(history.E_total, axis=0) < 0)  # the default network learns


# ---------------------------------------------------------------------------------------------
# Any architecture: backprop() against torch.autograd, on random nets of every kind

HIDDEN = ("sigmoid", "tanh", "relu", "linear")
OUTPUT = {  # loss → the output activations it is used with
    "mse": ("sigmoid", "tanh", "relu", "linear"),
    "cross_entropy": ("softmax",),
    "binary_cross_entropy": ("sigmoid",),
}
R = 3  # independent parameter sets on the leading axis, as the learning rates are in train()


def random_case(rng: np.random.Generator, loss: str, bias: bool, samples: int):  # type: ignore[no-untyped-def]
    depth = int(rng.integers(1, 4))
    layers = tuple(int(n) for n in rng.integers(1, 5, depth + 1))
    if loss == "cross_entropy":
        layers = (*layers[:-1], max(2, layers[-1]))
    hidden = tuple(str(rng.choice(HIDDEN)) for _ in range(depth - 1))
    net = network.Architecture(layers, (*hidden, str(rng.choice(OUTPUT[loss]))), loss)
    x = rng.uniform(-1.5, 1.5, (samples, layers[0]))
    if loss == "cross_entropy":
        t = rng.dirichlet(np.ones(layers[-1]), samples)  # each target row sums to 1
    else:
        t = rng.uniform(0.0, 1.0, (samples, layers[-1]))
    W = [rng.uniform(-2, 2, (R, n_out, n_in)) for n_in, n_out in itertools.pairwise(layers)]
    b = [rng.uniform(-1, 1, (R, n_out)) if bias else None for n_out in layers[1:]]
    return net, x, t, W, b


def torch_error(net, x, t, W, b):  # type: ignore[no-untyped-def]
    """E_total of each of the R parameter sets, written directly in torch."""
    import torch

    functions = {
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "relu": torch.relu,
        "linear": lambda z: z,
        "softmax": lambda z: torch.softmax(z, dim=-1),
    }
    a = torch.as_tensor(x).expand(R, *x.shape)
    for W_l, b_l, f in zip(W, b, net.activations, strict=True):
        z = a @ W_l.transpose(-1, -2) + (0 if b_l is None else b_l[:, None, :])
        a = functions[f](z)
    t = torch.as_tensor(t)
    if net.loss == "mse":
        terms = 0.5 * (t - a) ** 2
    elif net.loss == "cross_entropy":
        terms = -t * torch.log(a)
    else:
        terms = torch.nn.functional.binary_cross_entropy_with_logits(
            z, t.expand_as(z), reduction="none"
        )
    return terms.sum(dim=(-2, -1))


@pytest.mark.torch
@pytest.mark.parametrize("loss", list(OUTPUT))
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("samples", [1, 4])
def test_any_architecture_matches_torch_autograd(loss: str, bias: bool, samples: int) -> None:
    import torch

    rng = np.random.default_rng([len(loss), bias, samples])
    for _ in range(25):
        net, x, t, W, b = random_case(rng, loss, bias, samples)
        mine = network.backprop(net, x, t, W, b)
        tW = [torch.tensor(w, requires_grad=True) for w in W]
        tb = [None if v is None else torch.tensor(v, requires_grad=True) for v in b]
        e_total = torch_error(net, x, t, tW, tb)
        e_total.sum().backward()  # the R sets are independent: each gets its own gradient
        what = f"{net} bias={bias} samples={samples}"
        np.testing.assert_allclose(mine.E_total, e_total.detach().numpy(), rtol=1e-12, err_msg=what)
        for layer in range(net.depth):
            np.testing.assert_allclose(
                mine.dE_dW[layer], tW[layer].grad.numpy(), rtol=1e-10, atol=1e-13, err_msg=what
            )
            if bias:
                np.testing.assert_allclose(
                    mine.dE_db[layer], tb[layer].grad.numpy(), rtol=1e-10, atol=1e-13, err_msg=what
                )


def test_train_network_is_repeated_backprop_and_descent() -> None:
    rng = np.random.default_rng(7)
    net, x, t, W, b = random_case(rng, "mse", True, 3)
    W0, b0 = [w[0] for w in W], [v[0] for v in b]
    etas = np.array([0.1, 0.7])
    run = network.train_network(net, x, t, W0, b0, etas, 5)
    assert run.E_total.shape == (6, 2)
    for j, eta in enumerate(etas):
        Ws, bs = list(W0), list(b0)
        for k in range(6):
            one = network.backprop(net, x, t, Ws, bs)
            np.testing.assert_array_equal(run.E_total[k, j], one.E_total)
            for layer in range(net.depth):
                np.testing.assert_array_equal(run.W[layer][k, j], Ws[layer])
                np.testing.assert_array_equal(run.delta[layer][k, j], one.delta[layer])
            Ws = [w - eta * g for w, g in zip(Ws, one.dE_dW, strict=True)]
            bs = [v - eta * g for v, g in zip(bs, one.dE_db, strict=True)]
    fixed = network.train_network(net, x, t, W0, b0, etas, 3, train_bias=False)
    for layer in range(net.depth):
        np.testing.assert_array_equal(
            fixed.b[layer], np.broadcast_to(b0[layer], (4, 2, *b0[layer].shape))
        )
