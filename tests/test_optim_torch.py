"""Each optimizer's NumPy trajectory is torch.optim's, on networks hypothesis draws.

torch.optim (SGD with and without momentum or Nesterov, RMSprop, Adam, AdamW, each at the
defaults bpxl writes on Setup) takes the steps, each from the gradient that NumPy's backprop
gives at torch's current parameters (test_properties holds that gradient to torch.autograd; fed
autograd's own gradient instead, Adam's m̂/√v̂ magnifies the last-bit differences of a gradient
near 0 past 1e-12 in some hundred steps). 200 full-batch steps on any network a file may
describe (test_properties' cases) must give the same parameters, E_total and optimizer state
(torch's momentum_buffer, square_avg, exp_avg, exp_avg_sq) to 1e-12, relative to each array's
largest entry, wherever the trajectory itself is well conditioned (`well_conditioned`).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from backprop_xlsx.mlp import network
from backprop_xlsx.mlp.optim import HYPERPARAMETERS, OPTIMIZERS
from tests.test_properties import Case, cases, near_a_kink

STEPS = 200
RTOL = 1e-12
DEFAULTS = {k: h.default for k, h in HYPERPARAMETERS.items()}
ETA = {"sgd": 0.05, "momentum": 0.02, "nesterov": 0.02, "rmsprop": 0.005, "adam": 0.01,
       "adamw": 0.01}  # fmt: skip


def torch_optimizer(name: str, params: list, eta: float):  # type: ignore[no-untyped-def]
    """torch.optim's optimizer of that name with bpxl's default hyperparameters."""
    import torch

    h = DEFAULTS
    return {
        "sgd": lambda: torch.optim.SGD(params, lr=eta),
        "momentum": lambda: torch.optim.SGD(params, lr=eta, momentum=h["mu"]),
        "nesterov": lambda: torch.optim.SGD(params, lr=eta, momentum=h["mu"], nesterov=True),
        "rmsprop": lambda: torch.optim.RMSprop(params, lr=eta, alpha=h["alpha"], eps=h["eps"]),
        "adam": lambda: torch.optim.Adam(
            params, lr=eta, betas=(h["beta1"], h["beta2"]), eps=h["eps"]
        ),
        "adamw": lambda: torch.optim.AdamW(
            params,
            lr=eta,
            betas=(h["beta1"], h["beta2"]),
            eps=h["eps"],
            weight_decay=h["weight_decay"],
        ),
    }[name]()


TORCH_STATE = {"momentum_buffer": "v", "square_avg": "v", "exp_avg": "m", "exp_avg_sq": "v"}


def torch_trajectory(case: Case, name: str, eta: float):  # type: ignore[no-untyped-def]
    """E_total of every iteration, the final W and b, and the final state by torch.optim."""
    import torch

    nw = case.network()
    W = [torch.tensor(w) for w in nw.W]
    trained = nw.bias == "trained"
    b = [None if v is None else torch.tensor(v) for v in nw.b]
    params = W + ([v for v in b if v is not None] if trained else [])
    opt = torch_optimizer(name, params, eta)
    losses = []
    for k in range(STEPS + 1):
        with np.errstate(all="ignore"):
            run = network.backprop(
                nw.net, nw.inputs, nw.targets, [w.numpy() for w in W],
                [None if v is None else v.numpy() for v in b],
            )  # fmt: skip
        losses.append(float(run.E_total))
        if k == STEPS:
            break
        grads = run.dE_dW + ([g for g, v in zip(run.dE_db, b, strict=True) if v is not None]
                             if trained else [])  # fmt: skip
        for p, g in zip(params, grads, strict=True):
            p.grad = torch.tensor(g)
        opt.step()
    state = [
        {ours: opt.state[p][theirs].numpy() for theirs, ours in TORCH_STATE.items()
         if theirs in opt.state[p]}
        for p in params
    ]  # fmt: skip
    return (
        np.array(losses),
        [w.numpy() for w in W],
        [None if v is None else v.numpy() for v in b],
        state,
    )


def numpy_trajectory(case: Case, name: str, eta: float, nudge: float = 0.0) -> network.History:
    """NumPy's run; `nudge` scales the starting weights and η by 1 + nudge, so every step
    differs from the run's by about a rounding, as another program's steps do."""
    nw = case.network()
    W = [w * (1 + nudge) for w in nw.W]
    return network.train_network(
        nw.net, nw.inputs, nw.targets, W, nw.b, [eta * (1 + nudge)], STEPS,
        train_bias=nw.bias == "trained", optimizer=OPTIMIZERS[name], hyper=DEFAULTS,
    )  # fmt: skip


def well_conditioned(h: network.History, nudged: network.History) -> bool:
    """Whether a run one rounding away at every step (weights and η × (1 + 2⁻⁵²)) stays within
    1e-13 of the run's weights and E_total at every iteration. Where it does not, the trajectory
    magnifies rounding: once E reaches the rounding floor (1e-30), g is rounding noise and
    RMSprop's and Adam's g/√v still step by about η whatever its last bits (measured: a
    difference doubling every step); a sum of saturated terms magnifies its weights' last bits
    too. No two correct programs agree there to 1e-12, so the comparison would test the
    conditioning, not the rule."""
    for a, b in zip([*h.W, h.E_total], [*nudged.W, nudged.E_total], strict=True):
        scale = float(np.abs(a).max())
        if not np.allclose(a, b, rtol=1e-13, atol=1e-13 * scale):
            return False
    return True


def assert_same(mine: np.ndarray, witness: np.ndarray, what: str, history: float = 0.0) -> None:
    """Relative 1e-12 of the array's largest entry, or of the largest it ever was (`history`):
    an entry near 0 carries the rounding of the terms it was summed from, not of itself."""
    scale = max(float(np.max(np.abs(witness), initial=0.0)), history, 1e-300)
    np.testing.assert_allclose(mine, witness, rtol=RTOL, atol=RTOL * scale, err_msg=what)


@pytest.mark.slow
@pytest.mark.torch
@settings(max_examples=100, deadline=None)
@given(cases(max_columns=400), st.sampled_from(sorted(OPTIMIZERS)))
@example(Case((2, 2, 2), ("sigmoid", "sigmoid"), "mse", True, 1), "adam")
@example(Case((2, 3, 1), ("tanh", "sigmoid"), "binary_cross_entropy", "fixed", 4), "nesterov")
@example(Case((2, 4, 3), ("relu", "softmax"), "cross_entropy", True, 5), "rmsprop")
@example(Case((1, 2, 2, 1), ("sigmoid", "tanh", "linear"), "mse", True, 3), "adamw")
@example(Case((3, 1), ("linear",), "mse", False, 2), "momentum")
def test_numpy_optimizers_are_torch_optim(case: Case, name: str) -> None:
    eta = ETA[name]
    with np.errstate(all="ignore"):
        h = numpy_trajectory(case, name, eta)
    nw = case.network()
    assume(np.isfinite(h.E_total).all())
    for k in range(0, STEPS + 1, 20):  # torch and NumPy on either side of a ReLU kink
        with np.errstate(all="ignore"):
            run = network.backprop(
                nw.net, nw.inputs, nw.targets, [w[k, 0] for w in h.W],
                [None if v is None else v[k, 0] for v in h.b],
            )  # fmt: skip
        assume(not near_a_kink(nw, run))
    with np.errstate(all="ignore"):
        assume(well_conditioned(h, numpy_trajectory(case, name, eta, nudge=2.0**-52)))
    losses, W, b, state = torch_trajectory(case, name, eta)
    assert_same(h.E_total[:, 0], losses, f"{name}: E_total per iteration")
    for layer, w in enumerate(W):
        assert_same(h.W[layer][-1, 0], w, f"{name}: W[{layer}] after {STEPS} steps")
    for layer, v in enumerate(b):
        if v is not None:
            assert_same(h.b[layer][-1, 0], v, f"{name}: b[{layer}] after {STEPS} steps")
    mine = [{s: h.state_W[s][layer][:, 0] for s in h.state_W} for layer in range(len(W))]
    if nw.bias == "trained":
        mine += [
            {s: h.state_b[s][layer][:, 0] for s in h.state_b}
            for layer, v in enumerate(b) if v is not None
        ]  # fmt: skip
    for p, (ours, theirs) in enumerate(zip(mine, state, strict=True)):
        assert set(theirs) <= set(ours), (sorted(theirs), sorted(ours))
        assert len(theirs) == len(OPTIMIZERS[name].states) - 2 * (name in ("adam", "adamw"))
        for key, value in theirs.items():
            what = f"{name}: state {key} of parameter {p}"
            assert_same(ours[key][-1], value, what, float(np.abs(ours[key]).max()))
