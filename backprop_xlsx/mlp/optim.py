"""The optimizers of `torch.optim`, as update rules on NumPy arrays, the way their docs read.

sgd, momentum, nesterov, rmsprop, adam and adamw, each with torch's defaults and a state that
starts at 0, so that every sheet column reads against PyTorch's documentation (the table of
rules is in docs/workbook.md, "Optimizers"; `OPTIMIZERS` holds each as one line of text). The
same rules are the sheets' formulas (formulas.py). Hyperparameters may be arrays over the
leading (per-η) axes, as η may: the verifier runs many changed sets of them at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Hyperparameter:
    key: str  # the Setup key and the name NumPy's rules take: "beta1"
    symbol: str  # as shown on Setup: "β1"
    default: float  # torch.optim's default
    meaning: str


# In the order they are listed on Setup (below the starting values).
HYPERPARAMETERS = {
    h.key: h
    for h in (
        Hyperparameter("mu", "μ", 0.9, "momentum (Momentum, Nesterov: SGD momentum)"),
        Hyperparameter("beta1", "β1", 0.9, "decay of the mean m of g (Adam, AdamW)"),
        Hyperparameter("beta2", "β2", 0.999, "decay of the mean v of g² (Adam, AdamW)"),
        Hyperparameter("alpha", "α", 0.99, "decay of the mean v of g² (RMSprop)"),
        Hyperparameter("eps", "ε", 1e-8, "added to √v or √v̂ (RMSprop, Adam, AdamW)"),
        Hyperparameter("weight_decay", "λ", 0.01, "decoupled weight decay (AdamW)"),
    )
}

State = dict[str, np.ndarray]  # state name → array of the parameter's shape
Hyper = Mapping[str, np.ndarray | float]


@dataclass(frozen=True)
class Optimizer:
    """One update rule: its state names (in column order), hyperparameters and step."""

    name: str  # as on the command line: "adam"
    label: str  # as in sheet titles: "Adam"
    states: tuple[str, ...]  # "m", "v", "m_hat", "v_hat": columns m_w1, v_w1, m̂_w1, v̂_w1
    hyper: tuple[str, ...]  # keys of HYPERPARAMETERS it reads
    torch: str  # the torch.optim call with the same defaults
    rule: str  # the update, as one line of text for the sheet's note
    step: Callable[[np.ndarray, np.ndarray, State, np.ndarray, Hyper], np.ndarray]
    # hyperparameters whose power βᵗ the bias correction needs: kept as a running product
    # βᵗ = βᵗ⁻¹·β (a column of its own), as a spreadsheet's POWER is #NUM! once βᵗ underflows
    # (LibreOffice: 0.9^6724 < 2.2e-308), while a product just reaches 0
    powers: tuple[str, ...] = ()

    @property
    def recorded(self) -> tuple[str, ...]:
        """The state's names, then the powers': "beta1_t" for β1ᵗ."""
        return self.states + tuple(f"{h}_t" for h in self.powers)

    def init(self, p: np.ndarray) -> State:
        """Every state 0, every power β⁰ = 1: the values of iteration 0 (no step taken yet).

        So momentum's first v is g, as torch's first momentum buffer is (torch takes g itself,
        not (1 − dampening)·g; dampening is 0 here, so the two agree)."""
        out = {s: np.zeros_like(p) for s in self.states}
        return out | {f"{h}_t": np.ones_like(p) for h in self.powers}


def _sgd(p: np.ndarray, g: np.ndarray, st: State, eta: np.ndarray, h: Hyper) -> np.ndarray:
    return p - eta * g


def _momentum(p: np.ndarray, g: np.ndarray, st: State, eta: np.ndarray, h: Hyper) -> np.ndarray:
    st["v"] = h["mu"] * st["v"] + g
    return p - eta * st["v"]


def _nesterov(p: np.ndarray, g: np.ndarray, st: State, eta: np.ndarray, h: Hyper) -> np.ndarray:
    st["v"] = h["mu"] * st["v"] + g
    return p - eta * (g + h["mu"] * st["v"])


def _rmsprop(p: np.ndarray, g: np.ndarray, st: State, eta: np.ndarray, h: Hyper) -> np.ndarray:
    st["v"] = h["alpha"] * st["v"] + (1 - h["alpha"]) * g**2
    return p - eta * g / (np.sqrt(st["v"]) + h["eps"])


def _adam_moments(g: np.ndarray, st: State, h: Hyper) -> None:
    st["m"] = h["beta1"] * st["m"] + (1 - h["beta1"]) * g
    st["v"] = h["beta2"] * st["v"] + (1 - h["beta2"]) * g**2
    st["beta1_t"] = st["beta1_t"] * h["beta1"]
    st["beta2_t"] = st["beta2_t"] * h["beta2"]
    st["m_hat"] = st["m"] / (1 - st["beta1_t"])
    st["v_hat"] = st["v"] / (1 - st["beta2_t"])


def _adam(p: np.ndarray, g: np.ndarray, st: State, eta: np.ndarray, h: Hyper) -> np.ndarray:
    _adam_moments(g, st, h)
    return p - eta * st["m_hat"] / (np.sqrt(st["v_hat"]) + h["eps"])


def _adamw(p: np.ndarray, g: np.ndarray, st: State, eta: np.ndarray, h: Hyper) -> np.ndarray:
    _adam_moments(g, st, h)
    return p * (1 - eta * h["weight_decay"]) - eta * st["m_hat"] / (np.sqrt(st["v_hat"]) + h["eps"])


_ADAM_RULE = "m ← β1·m + (1 − β1)·g, v ← β2·v + (1 − β2)·g², m̂ = m/(1 − β1ᵗ), v̂ = v/(1 − β2ᵗ), "
OPTIMIZERS = {
    o.name: o
    for o in (
        Optimizer("sgd", "LR", (), (), "SGD(lr=η)", "w ← w − η·g", _sgd),
        Optimizer(
            "momentum", "Momentum", ("v",), ("mu",), "SGD(lr=η, momentum=μ)",
            "v ← μ·v + g, w ← w − η·v", _momentum,
        ),
        Optimizer(
            "nesterov", "Nesterov", ("v",), ("mu",), "SGD(lr=η, momentum=μ, nesterov=True)",
            "v ← μ·v + g, w ← w − η·(g + μ·v)", _nesterov,
        ),
        Optimizer(
            "rmsprop", "RMSprop", ("v",), ("alpha", "eps"), "RMSprop(lr=η, alpha=α, eps=ε)",
            "v ← α·v + (1 − α)·g², w ← w − η·g/(√v + ε)", _rmsprop,
        ),
        Optimizer(
            "adam", "Adam", ("m", "v", "m_hat", "v_hat"), ("beta1", "beta2", "eps"),
            "Adam(lr=η, betas=(β1, β2), eps=ε)", _ADAM_RULE + "w ← w − η·m̂/(√v̂ + ε)", _adam,
            ("beta1", "beta2"),
        ),
        Optimizer(
            "adamw", "AdamW", ("m", "v", "m_hat", "v_hat"),
            ("beta1", "beta2", "eps", "weight_decay"),
            "AdamW(lr=η, betas=(β1, β2), eps=ε, weight_decay=λ)",
            _ADAM_RULE + "w ← w·(1 − η·λ) − η·m̂/(√v̂ + ε)", _adamw, ("beta1", "beta2"),
        ),
    )
}  # fmt: skip
SGD = OPTIMIZERS["sgd"]
STATE_HEADERS = {"v": "v", "m": "m", "m_hat": "m̂", "v_hat": "v̂"}


def hyper_keys(optimizers: Sequence[str]) -> tuple[str, ...]:
    """The hyperparameters a workbook of these optimizers shows on Setup, in Setup's order."""
    wanted = {k for name in optimizers for k in OPTIMIZERS[name].hyper}
    return tuple(k for k in HYPERPARAMETERS if k in wanted)


def per_leading(value: np.ndarray | float, p: np.ndarray) -> np.ndarray:
    """A value over the leading axes (η's), shaped to broadcast against a parameter array."""
    v = np.asarray(value, dtype=np.float64)
    return v.reshape(v.shape + (1,) * (p.ndim - v.ndim)) if v.ndim else v


def step_all(
    optimizer: Optimizer,
    params: Sequence[np.ndarray],
    grads: Sequence[np.ndarray],
    states: Sequence[State],
    eta: np.ndarray,
    hyper: Hyper,
) -> list[np.ndarray]:
    """One step of every parameter array (states updated in place); η and the hyperparameters
    run over the leading dimensions."""
    out = []
    for p, g, st in zip(params, grads, states, strict=True):
        h = {k: per_leading(hyper[k], p) for k in optimizer.hyper}
        out.append(optimizer.step(p, g, st, per_leading(eta, p), h))
    return out
