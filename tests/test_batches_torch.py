"""An independent witness for mini-batch training: torch.autograd and torch.optim.SGD, fed the
same batches from the seeded schedule, give NumPy's trajectory over 200 steps on random
networks (hypothesis draws the structure, like tests/test_properties.py), and the full-pass
loss E_train of every step.

The gradient is the sum over the batch's samples (the loss is Σ over the batch, not a mean),
as the workbook's ∂E/∂w columns are; torch's `SGD(lr=η)` then takes the same step.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from test_properties import OUTPUT, Case, near_a_kink

from backprop_xlsx.mlp import batches, network
from backprop_xlsx.mlp.config import check_batching
from backprop_xlsx.mlp.layout import SheetLayout
from backprop_xlsx.mlp.optim import HYPERPARAMETERS, OPTIMIZERS

STEPS = 200
TOLERANCE = 1e-12  # relative to each array's largest entry


@st.composite
def batch_cases(draw: st.DrawFn) -> tuple[Case, int, int, float]:
    """A small random network, its batch size (1 … S − 1), a shuffle seed and an η."""
    depth = draw(st.integers(1, 3))
    loss = draw(st.sampled_from(list(OUTPUT)))
    hidden = draw(st.lists(st.sampled_from(("sigmoid", "tanh", "relu", "linear")),
                           min_size=depth - 1, max_size=depth - 1))  # fmt: skip
    output = draw(st.sampled_from(OUTPUT[loss]))
    layers = draw(st.lists(st.integers(1, 5), min_size=depth + 1, max_size=depth + 1))
    if output == "softmax":
        layers[-1] = max(layers[-1], 2)
    samples = draw(st.integers(2, 16))
    case = Case(
        layers=tuple(layers),
        activations=(*hidden, output),
        loss=loss,
        bias=draw(st.sampled_from((False, True, "fixed"))),
        samples=samples,
        seed=draw(st.integers(0, 2**32 - 1)),
        scale=draw(st.sampled_from([0.5, 1.0])),
    )
    size = draw(st.integers(1, samples - 1))
    return case, size, draw(st.integers(0, 2**32 - 1)), draw(st.sampled_from([0.01, 0.05, 0.1]))


# each optimizer as torch.optim builds it, with torch's defaults (those of optim.py)
TORCH_OPTIMIZERS = {
    "sgd": lambda params, eta, torch: torch.optim.SGD(params, lr=eta),
    "momentum": lambda params, eta, torch: torch.optim.SGD(params, lr=eta, momentum=0.9),
    "nesterov": lambda params, eta, torch: torch.optim.SGD(
        params, lr=eta, momentum=0.9, nesterov=True
    ),
    "rmsprop": lambda params, eta, torch: torch.optim.RMSprop(params, lr=eta),
    "adam": lambda params, eta, torch: torch.optim.Adam(params, lr=eta),
    "adamw": lambda params, eta, torch: torch.optim.AdamW(params, lr=eta),
}


def torch_trajectory(case: Case, size: int, seed: int, eta: float, optimizer_name: str = "sgd"):  # type: ignore[no-untyped-def]
    """W, b after every step and E_train of every step, by torch, batches from the schedule."""
    import torch

    nw = case.network()
    functions = {
        "sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu,
        "linear": lambda z: z, "softmax": lambda z: torch.softmax(z, dim=-1),
    }  # fmt: skip
    W = [torch.tensor(w, requires_grad=True) for w in nw.W]
    b = [None if v is None else torch.tensor(v, requires_grad=nw.bias == "trained") for v in nw.b]
    trained = [*W, *(v for v in b if v is not None and nw.bias == "trained")]
    optimizer = TORCH_OPTIMIZERS[optimizer_name](trained, eta, torch)
    x_all, t_all = torch.tensor(nw.inputs), torch.tensor(nw.targets)

    def loss(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = x
        for W_l, b_l, f in zip(W, b, nw.net.activations, strict=True):
            z = a @ W_l.T + (0 if b_l is None else b_l)
            a = functions[f](z)
        if nw.net.loss == "mse":
            return (0.5 * (t - a) ** 2).sum()
        if nw.net.loss == "cross_entropy":
            return (-t * torch.log(a)).sum()
        # as the workbook writes it, through z: finite where σ(z) rounds to 1
        return torch.nn.functional.binary_cross_entropy_with_logits(z, t, reduction="sum")

    epochs = batches.epochs_for(STEPS, case.samples, size)
    numbers = batches.step_batches(batches.shuffles(case.samples, epochs, seed), size, STEPS)
    Ws, bs, E_train = [], [], []
    for k in range(STEPS + 1):
        Ws.append([w.detach().numpy().copy() for w in W])
        bs.append([None if v is None else v.detach().numpy().copy() for v in b])
        with torch.no_grad():
            E_train.append(float(loss(x_all, t_all)))
        rows = torch.tensor(numbers[k] - 1)
        optimizer.zero_grad()
        loss(x_all[rows], t_all[rows]).backward()
        optimizer.step()
    return Ws, bs, np.array(E_train)


def close(mine: np.ndarray, witness: np.ndarray, what: str) -> None:
    scale = max(1.0, float(np.max(np.abs(witness), initial=0.0)))
    np.testing.assert_allclose(mine, witness, rtol=0, atol=TOLERANCE * scale, err_msg=what)


EXAMPLES = [
    (Case((2, 3, 1), ("sigmoid", "sigmoid"), "mse", True, 4), 2, 0, 0.1),
    (Case((2, 4, 3), ("tanh", "softmax"), "cross_entropy", True, 6), 4, 7, 0.05),
    (
        Case((3, 2, 2, 1), ("relu", "tanh", "sigmoid"), "binary_cross_entropy", "fixed", 9),
        1,
        3,
        0.1,
    ),
]


@pytest.mark.torch
@pytest.mark.parametrize("drawn", EXAMPLES)
def test_mini_batch_examples_are_torch_sgd(drawn: tuple[Case, int, int, float]) -> None:
    assert check_against_torch(drawn), "the example left float64 or sat on a ReLU kink"


@pytest.mark.torch
@pytest.mark.slow  # ~1 s an example: 200 steps of torch autograd
@settings(max_examples=40)
@given(batch_cases())
def test_numpy_mini_batches_are_torch_sgd(drawn: tuple[Case, int, int, float]) -> None:
    assume(check_against_torch(drawn))


@pytest.mark.torch
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_mini_batches_with_every_optimizer_are_torch_optim(name: str) -> None:
    """Mini-batches and an optimizer together: each step's update of torch.optim's rule from
    the gradient of the schedule's batch."""
    drawn = (Case((2, 3, 1), ("tanh", "sigmoid"), "binary_cross_entropy", True, 10, 5), 4, 2, 0.05)
    assert check_against_torch(drawn, name), "the example left float64 or sat on a ReLU kink"


def check_against_torch(drawn: tuple[Case, int, int, float], optimizer_name: str = "sgd") -> bool:
    """NumPy's run against torch's; False (nothing compared) where NumPy's run leaves float64
    or a ReLU input sits within rounding of 0 (see test_properties.near_a_kink)."""
    case, size, seed, eta = drawn
    nw = check_batching(case.network(), size, seed, STEPS)
    sheet = SheetLayout(nw)
    x, t, W, b = sheet.parameters({e.key: e.value for e in sheet.setup})
    numbers = batches.step_batches(sheet.schedule(), size, STEPS)
    with np.errstate(all="ignore"):
        optimizer = OPTIMIZERS[optimizer_name]
        hyper = {k: HYPERPARAMETERS[k].default for k in optimizer.hyper}
        h = network.train_network(nw.net, x, t, W, b, [eta], STEPS,
                                  train_bias=nw.bias == "trained", batches=numbers,
                                  optimizer=optimizer, hyper=hyper)  # fmt: skip
        full = batches.full_pass(nw.net, x, t, h.W, h.b)
    if not (all(np.isfinite(w).all() for w in h.W) and np.isfinite(full.E_train).all()):
        return False
    for k in range(STEPS + 1):
        rows = numbers[k] - 1
        run = network.backprop(nw.net, x[rows], t[rows], [w[k, 0] for w in h.W],
                               [None if v is None else v[k, 0] for v in h.b])  # fmt: skip
        if near_a_kink(nw, run):
            return False
    Ws, bs, E_train = torch_trajectory(case, size, seed, eta, optimizer_name)
    for layer in range(nw.net.depth):
        close(h.W[layer][:, 0], np.stack([w[layer] for w in Ws]), f"W{layer + 1} of {drawn}")
        if h.b[layer] is not None:
            close(h.b[layer][:, 0], np.stack([v[layer] for v in bs]), f"b{layer + 1} of {drawn}")
    close(full.E_train[:, 0], E_train, f"E_train of {drawn}")
    # the batch of each step is the schedule's: the history holds exactly those inputs
    np.testing.assert_array_equal(h.a[0][:, 0], x[numbers - 1])
    return True
