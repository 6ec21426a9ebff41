"""What a build is asked for, checked before anything is written: learning rates, steps, and a
NumPy run of the whole training that must finish without overflowing."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from backprop_xlsx.errors import BpxlError
from backprop_xlsx.mlp import batches, description
from backprop_xlsx.mlp.description import MAX_STEPS
from backprop_xlsx.mlp.layout import SheetLayout, lr_sheet_title
from backprop_xlsx.mlp.optim import HYPERPARAMETERS, OPTIMIZERS


def check_learning_rates(etas: list[float]) -> list[float]:
    """Positive, finite and distinct: each learning rate gets its own sheet."""
    if not etas:
        raise BpxlError("give at least one learning rate, e.g. --lr 0.1 0.5 2")
    for eta in etas:
        if not math.isfinite(eta) or eta <= 0:
            raise BpxlError(f"learning rate must be a positive finite number, got {eta!r}")
    seen: set[str] = set()
    for eta in etas:
        title = lr_sheet_title(eta).casefold()  # distinct for distinct floats
        if title in seen:
            raise BpxlError(f"learning rate {eta!r} is given twice")
        seen.add(title)
    return etas


# EXP(x) of a spreadsheet is #NUM! once e^x is beyond the largest double, as is any overflow.
_EXP_LIMIT = float(np.log(np.finfo(np.float64).max))


def _exp_arguments(sheet: SheetLayout, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What each EXP of the sheet computes e^ of: −z for a sigmoid, z for a softmax.

    NumPy's sigmoid hides an overflowing EXP(−z) as 0, so it is checked by its argument.
    """
    out = {}
    for layer, f in enumerate(sheet.network.net.activations):
        if f not in ("sigmoid", "softmax"):
            continue
        sign = -1.0 if f == "sigmoid" else 1.0
        for s in range(sheet.samples):
            for name in sheet.names[layer + 1]:
                key = sheet.sample(name, s)
                out[f"EXP({'-' if sign < 0 else ''}{key})"] = sign * values[key]
    return out


def _full_pass_sigmoids(sheet: SheetLayout, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A mini-batch run's full-pass sigmoid columns (their z is written inside the formula)."""
    if sheet.batching is None:
        return {}
    return {
        key: values[key]
        for layer, f in enumerate(sheet.network.net.activations)
        if f == "sigmoid"
        for name in sheet.names[layer + 1]
        for s in range(sheet.training_samples)
        if (key := f"full_a_{name}_s{s + 1}") in values
    }


def check_runs_finish(
    sheet: SheetLayout, etas: Sequence[float], steps: int
) -> dict[str, np.ndarray]:
    """Run the training in NumPy first; refuse a learning rate whose run overflows.

    Where NumPy reaches inf or NaN (or an EXP overflows), every spreadsheet shows #NUM! from
    that iteration on and `bpxl verify` rejects the workbook, so such a workbook is not
    written. Returns the run: every column's values, key → (steps + 1, len(etas)).
    """
    setup = {e.key: e.value for e in sheet.setup}
    with np.errstate(all="ignore"):
        values = sheet.run(setup, np.asarray(etas, dtype=np.float64), steps)
        broken = {name: ~np.isfinite(series) for name, series in values.items()}
        for name, argument in _exp_arguments(sheet, values).items():
            broken[name] = argument > _EXP_LIMIT
        for name, a in _full_pass_sigmoids(sheet, values).items():
            broken[f"EXP in {name}"] = a == 0  # 1/(1 + e^(−z)) is 0 only where e^(−z) overflows
    rate = "learning rate" if sheet.optimizer.name == "sgd" else f"{sheet.optimizer.label} at η"
    for j, eta in enumerate(etas):
        firsts = {
            name: int(np.argmax(bad[:, j])) for name, bad in broken.items() if bad[:, j].any()
        }
        if firsts:
            k = min(firsts.values())
            what = next(name for name, first in firsts.items() if first == k)
            raise BpxlError(
                f"{rate} {eta:g} overflows at iteration {k}: {what} is not a finite "
                "number there (beyond ±1.8e308, or a logarithm of 0), so a spreadsheet shows "
                "#NUM! from that iteration on; choose a smaller learning rate"
            )
    return values


MAX_SHUFFLE_SEED = 2**63 - 1


def check_batching(
    network: description.Network, batch_size: int | None, seed: int, steps: int
) -> description.Network:
    """The network trained by mini-batches of `batch_size` (see batches.py); unchanged for the
    whole training set (or no size), so that such a build is today's full-batch workbook."""
    S = network.samples
    if not 0 <= seed <= MAX_SHUFFLE_SEED:
        raise BpxlError(f"--shuffle-seed must be between 0 and 2**63 - 1, got {seed}")
    if batch_size is None or batch_size == S:
        return network
    if not 1 <= batch_size <= S:
        raise BpxlError(
            f"--batch-size must be between 1 and the {S} training sample{'s' * (S != 1)}, "
            f"got {batch_size}"
        )
    epochs = batches.epochs_for(steps, S, batch_size)
    return dataclasses.replace(network, batching=batches.Batching(batch_size, seed, epochs))


def check_steps(steps: int) -> int:
    if not 1 <= steps <= MAX_STEPS:
        raise BpxlError(f"--steps must be between 1 and {MAX_STEPS:,}, got {steps}")
    return steps


# The values torch.optim accepts, narrowed where a sheet would divide by 0 (β = 1: 1 − βᵗ).
_HYPER_LIMITS = {
    "mu": (0.0, math.inf, "--momentum", "≥ 0"),
    "beta1": (0.0, 1.0, "--betas", "in [0, 1)"),
    "beta2": (0.0, 1.0, "--betas", "in [0, 1)"),
    "alpha": (0.0, 1.0, "--alpha", "in [0, 1)"),
    "eps": (0.0, math.inf, "--eps", "≥ 0"),
    "weight_decay": (0.0, math.inf, "--weight-decay", "≥ 0"),
}


def check_optimizers(
    optimizers: Sequence[str], given: dict[str, float | None]
) -> tuple[list[str], dict[str, float]]:
    """The optimizers in the order given (sgd alone by default), each once, and the
    hyperparameters set: each within torch's range, and read by one of the optimizers."""
    chosen = list(dict.fromkeys(optimizers)) or ["sgd"]
    if len(chosen) < len(optimizers):
        twice = next(o for o in optimizers if optimizers.count(o) > 1)
        raise BpxlError(f"--optimizer {twice} is given twice")
    unknown = [o for o in chosen if o not in OPTIMIZERS]
    if unknown:
        raise BpxlError(f"unknown optimizer {unknown[0]!r}; choose from {', '.join(OPTIMIZERS)}")
    read = {k for o in chosen for k in OPTIMIZERS[o].hyper}
    hyper = {}
    for key, value in given.items():
        if value is None:
            continue
        low, high, flag, words = _HYPER_LIMITS[key]
        if key not in read:
            users = [o for o in OPTIMIZERS if key in OPTIMIZERS[o].hyper]
            raise BpxlError(
                f"{flag} is for {' and '.join(users)}, and no sheet of it is built: "
                f"add --optimizer {users[0]}"
            )
        if not (low <= value < high if high == 1.0 else low <= value):
            raise BpxlError(f"{flag}: {HYPERPARAMETERS[key].symbol} must be {words}, got {value!r}")
        hyper[key] = float(value)
    return chosen, hyper
