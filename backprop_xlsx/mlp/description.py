"""A network description: architecture, training set, starting parameters, from a TOML file.

Every preset in templates/ is one such file; docs/network-files.md is the reference (every key,
whether it is required, its default, an example). Weights are numbered layer by layer, within a
layer by receiving neuron, then by sending neuron (w1: i1→h1, w2: i2→h1, w3: i1→h2, …): row by
row of each W. The seed's flat keys (i1 i2 t1 t2 w1 … w8) describe its 2-2-2 network and stay
valid. Every problem is one line that starts with the key it is about, and counts samples and
list entries from 1: a file is a user's, and its mistakes are theirs to find quickly.
"""

from __future__ import annotations

import itertools
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from backprop_xlsx.errors import BpxlError
from backprop_xlsx.mlp.batches import Batching
from backprop_xlsx.mlp.network import ACTIVATIONS, LOSSES, PARAMS, Architecture

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PRESETS = ("seed", "mazur", "xor", "softmax", "moons", "ravine")
DEFAULT_PRESET = "seed"
BIAS_MODES = {True: "trained", False: "none", "fixed": "fixed"}
MAX_WEIGHT_LAYERS = 3
MAX_WIDTH = 64
MAX_SAMPLES = 64
MAX_FILE_BYTES = 1 << 20  # a network file is a few hundred bytes; refuse to parse megabytes
MAX_STEPS = 100_000

KEYS = (
    "layers", "activations", "loss", "bias", "inputs", "targets", "weights", "biases",
    "seed", "lr", "steps", "description",
)  # fmt: skip
SEED_KEYS = PARAMS  # i1 i2 t1 t2 w1 … w8
# Keys of the general form only: with none of them (and no layers) a file is the seed's short form.
GENERAL_KEYS = ("layers", "activations", "loss", "bias", "inputs", "targets", "weights", "biases",
                "seed")  # fmt: skip


@dataclass(frozen=True)
class Network:
    """Everything needed to train a network by formulas, and to say where it came from."""

    net: Architecture
    bias: str  # "none" | "trained" | "fixed"
    inputs: np.ndarray  # (S, n_in)
    targets: np.ndarray  # (S, n_out)
    W: tuple[np.ndarray, ...]  # (n_out, n_in) per weight layer
    b: tuple[np.ndarray | None, ...]  # (n_out,) per weight layer, None without biases
    lr: tuple[float, ...] | None = None
    steps: int | None = None
    preset: str | None = None
    description: str = ""
    classic: bool = False  # written with the seed's flat keys: the seed's own sheet layout
    batching: Batching | None = None  # mini-batches (see batches.py); None: full batch

    @property
    def samples(self) -> int:
        return self.inputs.shape[0]

    @property
    def weights(self) -> list[float]:
        """w1, w2, …: every W row by row, layer by layer."""
        return [float(w) for W in self.W for w in W.ravel()]

    @property
    def biases(self) -> list[float]:
        """b1, b2, …: neuron by neuron, layer by layer (empty without biases)."""
        return [float(v) for b in self.b if b is not None for v in b]


def _number(where: str, value: Any) -> float:
    """`where` names the key (and the entry): `w3`, `weights, number 3 (1-based)`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BpxlError(f"{where}: must be a number, got {value!r}")
    if not math.isfinite(value):
        raise BpxlError(f"{where}: must be a finite number, got {value!r}")
    return float(value)


def _numbers(key: str, value: Any, n: int | None = None, counted: str = "") -> list[float]:
    """A list of numbers; with `n`, exactly n of them (`counted` says whose count n is)."""
    if not isinstance(value, list):
        raise BpxlError(f"{key}: must be a list of numbers like [0.5, 1], got {value!r}")
    if n is not None and len(value) != n:
        got = f"{len(value)} number{'s' * (len(value) != 1)}"
        raise BpxlError(f"{key}: {got}, {counted or f'it needs {n}'}")
    base = key.removesuffix(" (1-based)")  # `targets, sample 2 (1-based)`: a row of a table
    counting = "(both 1-based)" if base != key else "(1-based)"
    return [_number(f"{base}, number {k + 1} {counting}", v) for k, v in enumerate(value)]


def _table(key: str, value: Any, width: int, layer: str) -> np.ndarray:
    """A list of rows, one per training sample, each of `width` numbers (the `layer`'s width)."""
    if not isinstance(value, list) or not value:
        raise BpxlError(
            f"{key}: must be a list of rows, one per training sample, like [[0, 1], [1, 0]], "
            f"got {value!r}"
        )
    if len(value) > MAX_SAMPLES:
        raise BpxlError(f"{key}: {len(value)} samples, at most {MAX_SAMPLES} are allowed")
    rows = []
    for s, row in enumerate(value):
        where = f"{key}, sample {s + 1} (1-based)"
        if not isinstance(row, list):
            raise BpxlError(f"{where}: must be a list of {width} numbers, got {row!r}")
        rows.append(_numbers(where, row, width, f"the {layer} layer has {width}"))
    return np.array(rows, dtype=np.float64)


def _layers(data: dict[str, Any]) -> tuple[int, ...]:
    layers = data.get("layers")
    if not isinstance(layers, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) for n in layers
    ):
        raise BpxlError(f"layers: must be a list of whole numbers like [2, 3, 1], got {layers!r}")
    if not 2 <= len(layers) <= MAX_WEIGHT_LAYERS + 1:
        raise BpxlError(
            f"layers: must give 1 to {MAX_WEIGHT_LAYERS} weight layers "
            f"(2 to {MAX_WEIGHT_LAYERS + 1} widths: input, hidden…, output), "
            f"got {len(layers)} widths"
        )
    for k, n in enumerate(layers):
        if not 1 <= n <= MAX_WIDTH:
            raise BpxlError(
                f"layers, number {k + 1} (1-based): each width must be 1 to {MAX_WIDTH}, got {n}"
            )
    return tuple(layers)


_GO_TOGETHER = (
    "(softmax output and cross_entropy go together: one without the other has no simple δ)"
)


def _architecture(data: dict[str, Any], layers: tuple[int, ...]) -> Architecture:
    depth = len(layers) - 1
    given_f, given_loss = "activations" in data, "loss" in data
    activations = data.get("activations", ["sigmoid"] * depth)
    if not isinstance(activations, list):
        raise BpxlError(
            f"activations: must be a list like {['sigmoid'] * depth}, one per weight layer, "
            f"got {activations!r}"
        )
    if len(activations) != depth:
        raise BpxlError(
            f"activations: {len(activations)} given, but layers {list(layers)} has {depth} "
            f"weight layer{'s' * (depth > 1)}: give one of {', '.join(ACTIVATIONS)} for each"
        )
    for k, f in enumerate(activations):
        if f not in ACTIVATIONS:
            raise BpxlError(
                f"activations, number {k + 1} (1-based): unknown {f!r} "
                f"(choose from {', '.join(ACTIVATIONS)})"
            )
    if "softmax" in activations[:-1]:
        k = activations.index("softmax")
        raise BpxlError(
            f"activations, number {k + 1} (1-based): softmax is only allowed on the output layer "
            "(the last)"
        )
    loss = data.get("loss", "mse")
    if loss not in LOSSES:
        raise BpxlError(f"loss: unknown {loss!r} (choose from {', '.join(LOSSES)})")
    output = activations[-1]
    if output == "softmax" and loss != "cross_entropy":
        said = f'loss = "{loss}"' if given_loss else 'loss: not given, so "mse", which'
        raise BpxlError(
            f'{said} does not go with the softmax output: set loss = "cross_entropy" {_GO_TOGETHER}'
        )
    if loss == "cross_entropy" and output != "softmax":
        said = (
            f"activations: the output layer is {output}"
            if given_f
            else "activations: not given, so every layer is sigmoid"
        )
        raise BpxlError(
            f'{said}, but loss = "cross_entropy" needs a softmax output: end activations with '
            f'"softmax" {_GO_TOGETHER}'
        )
    if loss == "binary_cross_entropy" and output != "sigmoid":
        raise BpxlError(
            f'activations: the output layer is {output}, but loss = "binary_cross_entropy" '
            "needs a sigmoid output"
        )
    if output == "softmax" and layers[-1] < 2:
        raise BpxlError(
            "layers: the output layer has 1 neuron, but a softmax output needs at least 2"
        )
    return Architecture(layers, tuple(activations), loss)


def _check_targets(net: Architecture, targets: np.ndarray) -> None:
    for s, row in enumerate(targets):
        where = f"targets, sample {s + 1} (1-based)"
        if net.loss == "cross_entropy" and (
            (row < 0).any() or not math.isclose(row.sum(), 1.0, rel_tol=0, abs_tol=1e-12)
        ):
            raise BpxlError(
                f"{where}: with loss = cross_entropy a row must be ≥ 0 and sum to 1, "
                f"got {[float(t) for t in row]}"
            )
        if net.loss == "binary_cross_entropy" and ((row < 0) | (row > 1)).any():
            raise BpxlError(
                f"{where}: with loss = binary_cross_entropy each target must be in [0, 1], "
                f"got {[float(t) for t in row]}"
            )


def _parameters(
    data: dict[str, Any], layers: tuple[int, ...], bias: str
) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray | None, ...]]:
    """W and b: as given, or drawn from `seed` (Glorot-uniform weights, zero biases)."""
    shapes = [(n_out, n_in) for n_in, n_out in itertools.pairwise(layers)]
    n_weights = sum(r * c for r, c in shapes)
    n_biases = sum(layers[1:]) if bias != "none" else 0
    seed = data.get("seed", 1)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise BpxlError(f"seed: must be a whole number ≥ 0, got {seed!r}")
    rng = np.random.default_rng(seed)
    if "weights" in data:
        counted = (
            f"layers {list(layers)} has {n_weights} weights (w1…w{n_weights}, row by row of each W)"
        )
        flat = np.array(_numbers("weights", data["weights"], n_weights, counted))
    else:
        flat = np.concatenate(
            [rng.uniform(-1, 1, r * c) * math.sqrt(6 / (r + c)) for r, c in shapes]
        )
    W, at = [], 0
    for r, c in shapes:
        W.append(flat[at : at + r * c].reshape(r, c))
        at += r * c
    if bias == "none":
        if "biases" in data:
            said = "bias = false" if "bias" in data else "bias is not given (default false)"
            raise BpxlError(f'biases: given, but {said}: set bias = true or bias = "fixed"')
        return tuple(W), (None,) * len(shapes)
    counted = f"layers {list(layers)} has {n_biases} biases (one per hidden and output neuron)"
    given = (
        np.array(_numbers("biases", data["biases"], n_biases, counted))
        if "biases" in data
        else None
    )
    b, at = [], 0
    for n_out in layers[1:]:
        b.append(given[at : at + n_out].copy() if given is not None else np.zeros(n_out))
        at += n_out
    return tuple(W), tuple(b)


def _training_defaults(data: dict[str, Any]) -> tuple[tuple[float, ...] | None, int | None]:
    lr = data.get("lr")
    if lr is not None:
        lr = tuple(_numbers("lr", lr))
        if not lr:
            raise BpxlError("lr: the list is empty; give one learning rate or more, like [0.5, 2]")
        for k, eta in enumerate(lr):
            if eta <= 0:
                raise BpxlError(f"lr, number {k + 1} (1-based): must be > 0, got {eta:g}")
            if eta in lr[:k]:
                raise BpxlError(f"lr, number {k + 1} (1-based): {eta:g} is given twice")
    steps = data.get("steps")
    if steps is not None and (
        isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS
    ):
        raise BpxlError(f"steps: must be a whole number from 1 to {MAX_STEPS:,}, got {steps!r}")
    return lr, steps


def _seed_network(data: dict[str, Any]) -> dict[str, Any]:
    """The seed's flat keys (any of i1 i2 t1 t2 w1 … w8 over the seed's own) as a general file."""
    flat = _read(_template_text(DEFAULT_PRESET), f"templates/{DEFAULT_PRESET}.toml")
    flat |= {k: _number(k, data.pop(k)) for k in SEED_KEYS if k in data}
    general = {
        "layers": [2, 2, 2],
        "activations": ["sigmoid", "sigmoid"],
        "loss": "mse",
        "bias": False,
        "inputs": [[flat["i1"], flat["i2"]]],
        "targets": [[flat["t1"], flat["t2"]]],
        "weights": [flat[f"w{k}"] for k in range(1, 9)],
    }
    for key in ("lr", "steps", "description"):
        if key in flat:
            general[key] = flat[key]
    general["classic"] = True
    clash = [k for k in GENERAL_KEYS if k in data]
    if clash:
        raise BpxlError(
            f"{clash[0]}: the seed's keys (i1 … w8) describe the 2-2-2 network; "
            "use either them or layers/inputs/targets/weights, not both"
        )
    return general | data


def from_mapping(data: dict[str, Any], preset: str | None = None) -> Network:
    """Check a parsed network file and build its description; BpxlError names the bad key."""
    data = dict(data)
    unknown = sorted(set(data) - set(KEYS) - set(SEED_KEYS))
    if unknown:
        raise BpxlError(
            f"unknown key {unknown[0]!r} (allowed: {' '.join(KEYS)}, or the seed's "
            f"{' '.join(SEED_KEYS)})"
        )
    if "layers" not in data:
        general = [k for k in GENERAL_KEYS if k in data]
        if general and not set(data) & set(SEED_KEYS):
            raise BpxlError(
                f"layers: required with {general[0]} (input width, hidden widths…, output width, "
                "like layers = [2, 3, 1]); only the seed's short form, i1 i2 t1 t2 w1…w8 alone, "
                "goes without it"
            )
        data = _seed_network(data)
    elif mixed := sorted(set(data) & set(SEED_KEYS)):
        raise BpxlError(
            f"{mixed[0]}: the seed's keys (i1 … w8) describe the 2-2-2 network; "
            "use either them or layers/inputs/targets/weights, not both"
        )
    layers = _layers(data)
    net = _architecture(data, layers)
    bias_value = data.get("bias", False)
    if not isinstance(bias_value, bool | str) or bias_value not in BIAS_MODES:
        raise BpxlError(f'bias: must be true, false or "fixed", got {bias_value!r}')
    bias = BIAS_MODES[bias_value]
    for key, width, layer in (("inputs", layers[0], "input"), ("targets", layers[-1], "output")):
        if key not in data:
            raise BpxlError(
                f"{key}: required, one row of {width} numbers (the {layer} layer's width) per "
                "training sample"
            )
    inputs = _table("inputs", data["inputs"], layers[0], "input")
    targets = _table("targets", data["targets"], layers[-1], "output")
    if len(inputs) != len(targets):
        raise BpxlError(
            f"targets: {len(targets)} samples, but inputs has {len(inputs)} (one row of each "
            "per training sample)"
        )
    _check_targets(net, targets)
    W, b = _parameters(data, layers, bias)
    lr, steps = _training_defaults(data)
    description = data.get("description", "")
    if not isinstance(description, str):
        raise BpxlError(f"description: must be text, got {description!r}")
    classic = bool(data.get("classic", False))
    return Network(net, bias, inputs, targets, W, b, lr, steps, preset, description, classic)


def structure(fields: Mapping[str, str]) -> Network:
    """A network's structure from the text a workbook's Setup shows (see equations.network_fields):
    layers, activations, loss, bias, samples, layout; every number in it is 0 (the numbers are
    in the workbook's own cells). BpxlError names the field that cannot be read."""

    def words(name: str) -> list[str]:
        return [w.strip() for w in str(fields.get(name, "")).split(",") if w.strip()]

    try:
        layers = [int(w) for w in words("layers")]
    except ValueError:
        raise BpxlError(f"layers must be whole numbers, got {fields.get('layers')!r}") from None
    data: dict[str, Any] = {"layers": layers, "activations": words("activations")}
    data["loss"] = str(fields.get("loss", "")).strip()
    shape = _layers(data)
    net = _architecture(data, shape)
    bias = {"false": "none", "true": "trained", "fixed": "fixed"}.get(
        str(fields.get("bias", "")).strip()
    )
    if bias is None:
        raise BpxlError(f"bias must be true, false or fixed, got {fields.get('bias')!r}")
    try:
        samples = int(str(fields.get("samples", "")).strip())
    except ValueError:
        samples = 0
    if not 1 <= samples <= MAX_SAMPLES:
        raise BpxlError(f"samples must be 1 to {MAX_SAMPLES}, got {fields.get('samples')!r}")
    kind = str(fields.get("layout", "")).strip()
    if kind not in ("classic", "general"):
        raise BpxlError(f"layout must be classic or general, got {fields.get('layout')!r}")
    classic = kind == "classic"
    if classic and (shape != (2, 2, 2) or bias != "none" or samples != 1 or net.loss != "mse"):
        raise BpxlError("layout classic is the seed's 2-2-2 sigmoid network only")
    W = tuple(np.zeros((n_out, n_in)) for n_in, n_out in itertools.pairwise(shape))
    b = tuple(None if bias == "none" else np.zeros(n) for n in shape[1:])
    preset_name = str(fields.get("preset", "")).strip()
    batching = _batching(fields, samples)
    return Network(
        net,
        bias,
        np.zeros((samples, shape[0])),
        np.zeros((samples, shape[-1])),
        W,
        b,
        preset=preset_name if preset_name in PRESETS else None,
        classic=classic,
        batching=batching,
    )


def _batching(fields: Mapping[str, str], samples: int) -> Batching | None:
    """The mini-batch schedule a workbook's Setup shows (batch size, shuffle seed, epochs);
    None without a batch size: full batch."""
    if "batch size" not in fields:
        return None
    numbers = {}
    for name in ("batch size", "shuffle seed", "epochs"):
        text = str(fields.get(name, "")).strip()
        if not re.fullmatch(r"[0-9]{1,18}", text):
            raise BpxlError(f"{name} must be a whole number ≥ 0, got {fields.get(name)!r}")
        numbers[name] = int(text)
    size, epochs = numbers["batch size"], numbers["epochs"]
    if not 1 <= size < samples:
        raise BpxlError(f"batch size must be 1 to {samples - 1} (samples − 1), got {size}")
    if not 1 <= epochs <= MAX_STEPS + 1:
        raise BpxlError(f"epochs must be 1 to {MAX_STEPS + 1:,}, got {epochs}")
    return Batching(size, numbers["shuffle seed"], epochs)


def _read(text: str, where: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BpxlError(f"{where}: not valid TOML ({exc})") from None


def _template_text(name: str) -> str:
    """templates/NAME.toml: beside the package in a checkout, inside it once installed."""
    checkout = Path(__file__).resolve().parents[2] / "templates" / f"{name}.toml"
    if checkout.is_file():
        return checkout.read_text(encoding="utf-8")
    return resources.files("backprop_xlsx.templates").joinpath(f"{name}.toml").read_text("utf-8")


def load_network(config: Path | None = None, preset_name: str | None = None) -> Network:
    """What `bpxl build` trains: a network file, or a preset (default: the seed)."""
    if config is not None and preset_name is not None:
        raise BpxlError("give either --preset or --config, not both")
    if config is not None:
        return load(config)
    return preset(preset_name or DEFAULT_PRESET)


def preset(name: str) -> Network:
    """One of PRESETS, from templates/NAME.toml."""
    if name not in PRESETS:
        raise BpxlError(f"unknown preset {name!r} (choose from {', '.join(PRESETS)})")
    where = f"templates/{name}.toml"
    try:
        return from_mapping(_read(_template_text(name), where), preset=name)
    except BpxlError as exc:
        raise BpxlError(f"{where}: {exc}") from None


def load(path: Path) -> Network:
    """A user's network file."""
    path = Path(path)
    if not path.is_file():  # a FIFO or a device would block or never end
        reason = "not a regular file" if path.exists() else "no such file"
        raise BpxlError(f"cannot read network file {path}: {reason}")
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise BpxlError(f"{path}: too large for a network file (over {MAX_FILE_BYTES:,} bytes)")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise BpxlError(f"cannot read network file {path}: {reason}") from None
    try:
        return from_mapping(_read(text, str(path)))
    except BpxlError as exc:
        message = str(exc)
        raise BpxlError(
            message if message.startswith(str(path)) else f"{path}: {message}"
        ) from None
