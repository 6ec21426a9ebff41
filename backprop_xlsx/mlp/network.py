"""Any small fully connected network in NumPy, written the way the equations read.

Per layer, samples as rows: z = W·a_prev + b, a = f(z); backward δ = (W_nextᵀ·δ_next)·f′(z),
∂E/∂W = Σ_samples δ·a_prevᵀ, then W ← W − η·∂E/∂W (docs/workbook.md derives it for the seed).
It is the reference the workbook's values and `bpxl verify` come from, so it computes as the
sheet does (softmax unshifted; exp, tanh, ln from libm for the same bits under any NumPy), and
every array may carry leading dimensions so that one call runs many η or networks at once.
The seed's names (PARAMS, QUANTITIES) are the columns of its classic layout. The tests hold it
to torch.autograd and finite differences.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from backprop_xlsx.mlp import libm
from backprop_xlsx.mlp.optim import SGD, Hyper, Optimizer, step_all

ACTIVATIONS = ("sigmoid", "tanh", "relu", "linear", "softmax")
LOSSES = ("mse", "cross_entropy", "binary_cross_entropy")


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + libm.exp(-x))


def softmax(z: np.ndarray) -> np.ndarray:
    """exp(z_k) / Σ_j exp(z_j) over the last axis, unshifted: exactly what the sheet computes."""
    e = libm.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def activate(f: str, z: np.ndarray) -> np.ndarray:
    if f == "sigmoid":
        return sigmoid(z)
    if f == "tanh":
        return libm.tanh(z)
    if f == "relu":
        return np.maximum(z, 0.0)
    if f == "linear":
        return z
    if f == "softmax":
        return softmax(z)
    raise ValueError(f"unknown activation {f!r}")


def derivative(f: str, z: np.ndarray, a: np.ndarray) -> np.ndarray:
    """f′(z), written through a = f(z) where that is how the sheet writes it: σ′ = a·(1 − a)."""
    if f == "sigmoid":
        return a * (1 - a)
    if f == "tanh":
        return 1 - a**2
    if f == "relu":
        return (z > 0).astype(np.float64)
    if f == "linear":
        return np.ones_like(z)
    raise ValueError(f"f′ of {f!r} is not elementwise (softmax is only used with cross-entropy)")


def error_terms(loss: str, z: np.ndarray, a: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Each sample's and output's share of E_total, shape (..., S, n_out).

    Binary cross-entropy −(t·ln a + (1 − t)·ln(1 − a)) is computed from z, as
    max(z, 0) − t·z + ln(1 + e^−|z|): the same value, finite even where a = σ(z) rounds to 1.
    """
    if loss == "mse":
        return 0.5 * (t - a) ** 2
    if loss == "cross_entropy":
        return -(t * libm.log(a))
    if loss == "binary_cross_entropy":
        return np.maximum(z, 0.0) - t * z + libm.log(1 + libm.exp(-np.abs(z)))
    raise ValueError(f"unknown loss {loss!r}")


def output_delta(loss: str, f: str, z: np.ndarray, a: np.ndarray, t: np.ndarray) -> np.ndarray:
    """δ_out = ∂E/∂z at the output layer.

    (a − t)·f′(z) for the squared error ½·Σ(t − a)²; a − t for softmax with cross-entropy
    −Σ t·ln a and for sigmoid with binary cross-entropy: the classic cancellations, which the
    workbook writes the same way."""
    if loss == "mse":
        return (a - t) * derivative(f, z, a)
    return a - t  # softmax + cross-entropy (targets summing to 1), sigmoid + binary CE


@dataclass(frozen=True)
class Architecture:
    """What the network is: widths from input to output, f per weight layer, the loss."""

    layers: tuple[int, ...]  # (n_inputs, n_hidden…, n_outputs)
    activations: tuple[str, ...]  # one per weight layer
    loss: str

    @property
    def depth(self) -> int:
        """Number of weight layers."""
        return len(self.layers) - 1


@dataclass
class Pass:
    """Everything one full-batch iteration computes, layer by layer (0: the first weight layer)."""

    z: list[np.ndarray]  # net inputs, (..., S, n_out) each
    a: list[np.ndarray]  # a[0] is the input; a[l + 1] = f(z[l])
    E: np.ndarray  # (..., S, n_out) error terms
    E_total: np.ndarray  # (...)
    delta: list[np.ndarray]  # δ per weight layer, (..., S, n_out)
    dE_dW: list[np.ndarray]  # (..., n_out, n_in), summed over samples
    dE_db: list[np.ndarray]  # (..., n_out), summed over samples


def _T(m: np.ndarray) -> np.ndarray:
    return np.swapaxes(m, -1, -2)


def _matmul(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x @ y, its products added one by one in a fixed order, left to right as a spreadsheet's
    sum reads: `@` calls BLAS, whose kernel (and order of summation) depends on the CPU and the
    library version, so the last bits of the cached values moved between machines. Elementwise
    multiply and add are exact IEEE operations everywhere."""
    out = x[..., :, 0, None] * y[..., 0, None, :]
    for i in range(1, x.shape[-1]):
        out = out + x[..., :, i, None] * y[..., i, None, :]
    return out


def forward(
    net: Architecture,
    x: np.ndarray,
    W: Sequence[np.ndarray],
    b: Sequence[np.ndarray | None],
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """z and a of every layer (a[0] = x): z = W·a_prev + b, a = f(z); a None b adds nothing."""
    a = [np.asarray(x, dtype=np.float64)]
    z: list[np.ndarray] = []
    for W_l, b_l, f in zip(W, b, net.activations, strict=True):
        z_l = _matmul(a[-1], _T(W_l))
        if b_l is not None:
            z_l = z_l + b_l[..., None, :]
        z.append(z_l)
        a.append(activate(f, z_l))
    return z, a


def backprop(
    net: Architecture,
    x: np.ndarray,
    t: np.ndarray,
    W: Sequence[np.ndarray],
    b: Sequence[np.ndarray | None],
) -> Pass:
    """One forward and backward pass over all samples: x (..., S, n_in), t (..., S, n_out).

    W (..., n_out, n_in), b (..., n_out): the leading axes run many η or networks at once. A
    layer whose b is None has no bias (it adds nothing to z). For the seed, W1 = [[w1, w2],
    [w3, w4]] and W2 = [[w5, w6], [w7, w8]] give its worked example line for line.
    """
    z, a = forward(net, x, W, b)
    E = error_terms(net.loss, z[-1], a[-1], t)
    E_total = E.sum(axis=(-2, -1))

    delta = [output_delta(net.loss, net.activations[-1], z[-1], a[-1], t)]
    for layer in range(net.depth - 2, -1, -1):
        f = net.activations[layer]
        back = _matmul(delta[0], W[layer + 1])
        delta.insert(0, back * derivative(f, z[layer], a[layer + 1]))
    dE_dW = [_matmul(_T(d), a_prev) for d, a_prev in zip(delta, a[:-1], strict=True)]
    dE_db = [d.sum(axis=-2) for d in delta]
    return Pass(z, a, E, E_total, delta, dE_dW, dE_db)


def descend(
    params: Sequence[np.ndarray], grads: Sequence[np.ndarray], eta: np.ndarray | float
) -> list[np.ndarray]:
    """p ← p − η·∂E/∂p for every parameter array; η runs over the leading dimensions."""
    eta = np.asarray(eta, dtype=np.float64)
    return [
        p - eta.reshape(eta.shape + (1,) * (p.ndim - eta.ndim)) * g
        for p, g in zip(params, grads, strict=True)
    ]


@dataclass
class History:
    """Every iteration of a training run, stacked: each array has shape (steps + 1, ..., …).

    Row k holds the parameters after k full-batch steps and everything computed from them.
    """

    W: list[np.ndarray]
    b: list[np.ndarray | None]
    z: list[np.ndarray]
    a: list[np.ndarray]  # a[0], the input, is not repeated per step (but is with mini-batches)
    E: np.ndarray
    E_total: np.ndarray
    delta: list[np.ndarray]
    dE_dW: list[np.ndarray]
    dE_db: list[np.ndarray]
    t: np.ndarray  # the targets, as given (with mini-batches, each step's)
    # the optimizer's state per name ("m", "v", …), as W and b: row k holds it after k steps
    state_W: dict[str, list[np.ndarray]] = field(default_factory=dict)
    state_b: dict[str, list[np.ndarray | None]] = field(default_factory=dict)


def train_network(
    net: Architecture,
    x: np.ndarray,
    t: np.ndarray,
    W: Sequence[np.ndarray],
    b: Sequence[np.ndarray | None],
    etas: Sequence[float] | np.ndarray,
    steps: int,
    *,
    train_bias: bool = True,
    optimizer: Optimizer = SGD,
    hyper: Hyper | None = None,
    batches: np.ndarray | None = None,
) -> History:
    """Training for every learning rate at once (η on a leading axis).

    W[l] has shape (n_out, n_in) and b[l] (n_out,) or None; each gets the leading axis here.
    With `train_bias` False the biases stay fixed: used in the forward pass, never updated.
    `optimizer` is the update rule (optim.py; plain gradient descent by default), `hyper` its
    hyperparameters by key, scalars or arrays of η's shape. Full batch by default; with
    `batches` (steps + 1, B) of 1-based sample numbers, step k sees only the samples
    batches[k] (its gradient the sum over them), and the history's a[0] and t hold each
    step's batch.
    """
    eta = np.asarray(etas, dtype=np.float64)

    def per_eta(v: np.ndarray | None, core: int) -> np.ndarray | None:
        """One copy per η; `v` may already carry η's axes (a set of values per η)."""
        if v is None:
            return None
        v = np.asarray(v, dtype=np.float64)
        return np.broadcast_to(v, eta.shape + v.shape[v.ndim - core :]).copy()

    Ws = [per_eta(w, 2) for w in W]
    bs = [per_eta(v, 1) for v in b]
    hyper = hyper or {}
    state_W = [optimizer.init(w) for w in Ws]
    trained_b = [v for v in bs if v is not None] if train_bias else []
    state_b = [optimizer.init(v) for v in trained_b]
    # Every step's arrays go straight into preallocated (steps + 1, …) arrays: a list of
    # per-step arrays costs ~1.5 kB of overhead a step (150 MB at 100,000 steps).
    history: History | None = None
    for k in range(steps + 1):
        x_k, t_k = (x, t) if batches is None else _batch(x, t, batches[k] - 1, eta.shape)
        run = backprop(net, x_k, t_k, Ws, bs)
        if history is None:
            history = _empty_history(steps + 1, Ws, bs, run, x, t, batches is not None)
            _empty_states(history, steps + 1, optimizer, Ws, bs if train_bias else [None] * len(bs))
        _record(history, k, Ws, bs, run)
        _record_states(history, k, state_W, state_b)
        if batches is not None:
            history.a[0][k], history.t[k] = x_k, t_k
        if k == steps:
            break
        if optimizer is SGD:  # plain gradient descent, as it always was
            Ws = descend(Ws, run.dE_dW, eta)
            if train_bias:
                bs = [
                    v if v is None else descend([v], [g], eta)[0]
                    for v, g in zip(bs, run.dE_db, strict=True)
                ]
            continue
        Ws = step_all(optimizer, Ws, run.dE_dW, state_W, eta, hyper)
        if train_bias:
            grads = [g for v, g in zip(bs, run.dE_db, strict=True) if v is not None]
            stepped = iter(step_all(optimizer, trained_b, grads, state_b, eta, hyper))
            bs = [v if v is None else next(stepped) for v in bs]
            trained_b = [v for v in bs if v is not None]
    assert history is not None
    return history


def _empty_states(
    h: History, n: int, optimizer: Optimizer, W: list[np.ndarray], b: list[np.ndarray | None]
) -> None:
    for name in optimizer.recorded:
        h.state_W[name] = [np.empty((n, *w.shape)) for w in W]
        h.state_b[name] = [None if v is None else np.empty((n, *v.shape)) for v in b]


def _record_states(h: History, k: int, state_W: list, state_b: list) -> None:
    for name, arrays in h.state_W.items():
        for array, st in zip(arrays, state_W, strict=True):
            array[k] = st[name]
        stored = (a for a in h.state_b[name] if a is not None)
        for array, st in zip(stored, state_b, strict=True):
            array[k] = st[name]


def _batch(
    x: np.ndarray, t: np.ndarray, rows: np.ndarray, lead: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """The rows (0-based sample indices) of x and t, with η's leading axes."""
    x_k = np.asarray(x, np.float64)[..., rows, :]
    t_k = np.asarray(t, np.float64)[..., rows, :]
    shape = np.broadcast_shapes(x_k.shape[:-2], t_k.shape[:-2], lead)
    return (
        np.broadcast_to(x_k, shape + x_k.shape[-2:]),
        np.broadcast_to(t_k, shape + t_k.shape[-2:]),
    )


def _empty_history(
    n: int,
    W: list[np.ndarray],
    b: list[np.ndarray | None],
    run: Pass,
    x: np.ndarray,
    t: np.ndarray,
    per_step: bool = False,
) -> History:
    """Preallocated rows; with `per_step` (mini-batches) the inputs and targets get rows too."""

    def like(v: np.ndarray) -> np.ndarray:
        return np.empty((n, *np.shape(v)))

    if per_step:
        x0, t0 = like(run.a[0]), like(run.E)
    else:
        x0, t0 = np.asarray(x, np.float64), np.asarray(t, np.float64)
    return History(
        W=[like(w) for w in W],
        b=[None if v is None else like(v) for v in b],
        z=[like(z) for z in run.z],
        a=[x0, *(like(a) for a in run.a[1:])],
        E=like(run.E),
        E_total=like(run.E_total),
        delta=[like(d) for d in run.delta],
        dE_dW=[like(g) for g in run.dE_dW],
        dE_db=[like(g) for g in run.dE_db],
        t=t0,
    )


def _record(h: History, k: int, W: list[np.ndarray], b: list[np.ndarray | None], run: Pass) -> None:
    """Row k of the history: the parameters of step k and everything computed from them."""
    for store, values in (
        (h.W, W), (h.z, run.z), (h.a[1:], run.a[1:]),
        (h.delta, run.delta), (h.dE_dW, run.dE_dW), (h.dE_db, run.dE_db),
    ):  # fmt: skip
        for array, value in zip(store, values, strict=True):
            array[k] = value
    for array, value in zip(h.b, b, strict=True):
        if array is not None:
            array[k] = value
    h.E[k] = run.E
    h.E_total[k] = run.E_total


# ---------------------------------------------------------------------------------------------
# The seed: the 2-2-2 sigmoid network with one name per scalar, as its workbook shows it


WEIGHTS = ("w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8")
INPUTS = ("i1", "i2", "t1", "t2")
PARAMS = INPUTS + WEIGHTS
GRADIENTS = tuple(f"dE_d{w}" for w in WEIGHTS)
SEED = Architecture(layers=(2, 2, 2), activations=("sigmoid", "sigmoid"), loss="mse")

# Every quantity of one iteration, in the order of the workbook's columns.
QUANTITIES = (
    "t1", "t2", "i1", "i2",
    "w1", "w2", "w3", "w4", "h1", "a_h1", "h2", "a_h2",
    "w5", "w6", "w7", "w8", "o1", "a_o1", "o2", "a_o2",
    "E1", "E2", "E_total",
    *GRADIENTS,
)  # fmt: skip
