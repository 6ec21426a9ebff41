"""The network's starting values: the template's defaults, overridden by a user's TOML file."""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import BpxlError
from .layout import lr_sheet_title
from .network import PARAMS, train

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MAX_STEPS = 100_000


def _read_toml(text: str, where: str) -> dict[str, float]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BpxlError(f"{where}: not valid TOML ({exc})") from None
    unknown = sorted(set(data) - set(PARAMS))
    if unknown:
        raise BpxlError(f"{where}: unknown key {unknown[0]!r} (allowed: {' '.join(PARAMS)})")
    values: dict[str, float] = {}
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BpxlError(f"{where}: {key} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise BpxlError(f"{where}: {key} must be a finite number, got {value!r}")
        values[key] = float(value)
    return values


def _template_text() -> str:
    """templates/seed.toml: beside the package in a checkout, inside it once installed."""
    checkout = Path(__file__).resolve().parent.parent / "templates" / "seed.toml"
    if checkout.is_file():
        return checkout.read_text(encoding="utf-8")
    return resources.files("backprop_xlsx.templates").joinpath("seed.toml").read_text("utf-8")


def default_values() -> dict[str, float]:
    """i1 i2 t1 t2 w1…w8 from templates/seed.toml, the one place the defaults live."""
    values = _read_toml(_template_text(), "templates/seed.toml")
    missing = [k for k in PARAMS if k not in values]
    if missing:
        raise BpxlError(f"templates/seed.toml: missing {' '.join(missing)}")
    return values


def load_values(config: Path | None = None) -> dict[str, float]:
    """The defaults, with any of i1 i2 t1 t2 w1…w8 replaced by the values in `config`."""
    values = default_values()
    if config is not None:
        try:
            text = Path(config).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise BpxlError(f"cannot read config {config}: {reason}") from None
        values.update(_read_toml(text, str(config)))
    return values


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
_EXP_ARGUMENTS = ("h1", "h2", "o1", "o2")  # each sigmoid computes EXP(-x) of these


def check_runs_finish(
    values: Mapping[str, float], etas: Sequence[float], steps: int
) -> dict[str, np.ndarray]:
    """Run the training in NumPy first; refuse a learning rate whose run overflows.

    Where NumPy reaches inf (or EXP overflows, which NumPy's sigmoid hides as 0), every
    spreadsheet shows #NUM! from that iteration on and `bpxl verify` rejects the workbook, so
    such a workbook is not written. Returns the run (train's history) for the charts.
    """
    with np.errstate(all="ignore"):
        history = train(values, etas, steps)
        broken = {name: ~np.isfinite(series) for name, series in history.items()}
        for name in _EXP_ARGUMENTS:  # sigmoid(x) = 1/(1+EXP(-x))
            broken[f"EXP(-{name})"] = -history[name] > _EXP_LIMIT
    for j, eta in enumerate(etas):
        firsts = {
            name: int(np.argmax(bad[:, j])) for name, bad in broken.items() if bad[:, j].any()
        }
        if firsts:
            k = min(firsts.values())
            what = next(name for name, first in firsts.items() if first == k)
            raise BpxlError(
                f"learning rate {eta:g} overflows at iteration {k}: {what} is beyond ±1.8e308 "
                "there, so a spreadsheet shows #NUM! from that iteration on; choose a smaller "
                "learning rate"
            )
    return history


def check_steps(steps: int) -> int:
    if not 1 <= steps <= MAX_STEPS:
        raise BpxlError(f"--steps must be between 1 and {MAX_STEPS:,}, got {steps}")
    return steps
