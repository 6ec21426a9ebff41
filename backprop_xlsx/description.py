"""A network description: architecture, training set, starting parameters, from a TOML file.

The file format (every preset in templates/ is one):

    layers      = [2, 3, 1]         # input width, hidden widths…, output width: 1-3 weight layers
    activations = ["sigmoid", "sigmoid"]   # one per weight layer; softmax on the output only
    loss        = "mse"             # mse | cross_entropy (softmax) | binary_cross_entropy (sigmoid)
    bias        = true               # true | false | "fixed" (in the forward pass, never updated)
    inputs      = [[0, 0], [0, 1], [1, 0], [1, 1]]   # one row per training sample
    targets     = [[0], [1], [1], [0]]
    weights     = [0.15, 0.2, …]     # optional, w1, w2, …; omitted: drawn from `seed`
    biases      = [0.35, 0.35, …]    # optional, b1, b2, … neuron by neuron, layer by layer
    seed        = 1
    lr          = [0.5, 1, 2]        # optional defaults for --lr and --steps
    steps       = 2000

Weights are numbered layer by layer, within a layer by receiving neuron, then by sending neuron
(w1: i1→h1, w2: i2→h1, w3: i1→h2, …): row by row of each W. The seed's flat keys (i1 i2 t1 t2
w1 … w8) describe its 2-2-2 network and stay valid. Every problem is one line naming the key.
"""

from __future__ import annotations

import itertools
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BpxlError
from .network import ACTIVATIONS, LOSSES, PARAMS, Architecture

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PRESETS = ("seed", "mazur", "xor", "softmax")
DEFAULT_PRESET = "seed"
BIAS_MODES = {True: "trained", False: "none", "fixed": "fixed"}
MAX_WEIGHT_LAYERS = 3
MAX_WIDTH = 64
MAX_SAMPLES = 64
MAX_FILE_BYTES = 1 << 20  # a network file is a few hundred bytes; refuse to parse megabytes

KEYS = (
    "layers", "activations", "loss", "bias", "inputs", "targets", "weights", "biases",
    "seed", "lr", "steps", "description",
)  # fmt: skip
SEED_KEYS = PARAMS  # i1 i2 t1 t2 w1 … w8


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


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BpxlError(f"{key} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise BpxlError(f"{key} must be a finite number, got {value!r}")
    return float(value)


def _numbers(key: str, value: Any, n: int | None = None) -> list[float]:
    if not isinstance(value, list):
        raise BpxlError(f"{key} must be a list of numbers, got {value!r}")
    if n is not None and len(value) != n:
        raise BpxlError(f"{key} must have {n} numbers, got {len(value)}")
    return [_number(f"{key}[{k + 1}]", v) for k, v in enumerate(value)]


def _table(key: str, value: Any, width: int) -> np.ndarray:
    """A list of rows, one per training sample, each of `width` numbers."""
    if not isinstance(value, list) or not value:
        raise BpxlError(f"{key} must be a list of rows (one per sample), got {value!r}")
    if len(value) > MAX_SAMPLES:
        raise BpxlError(f"{key}: at most {MAX_SAMPLES} samples, got {len(value)}")
    rows = [_numbers(f"{key}[{s + 1}]", row, width) for s, row in enumerate(value)]
    return np.array(rows, dtype=np.float64)


def _layers(data: dict[str, Any]) -> tuple[int, ...]:
    layers = data.get("layers")
    if not isinstance(layers, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) for n in layers
    ):
        raise BpxlError(f"layers must be a list of whole numbers like [2, 3, 1], got {layers!r}")
    if not 2 <= len(layers) <= MAX_WEIGHT_LAYERS + 1:
        raise BpxlError(
            f"layers must give 1 to {MAX_WEIGHT_LAYERS} weight layers "
            f"(2 to {MAX_WEIGHT_LAYERS + 1} widths), got {len(layers)} widths"
        )
    for n in layers:
        if not 1 <= n <= MAX_WIDTH:
            raise BpxlError(f"layers: each width must be 1 to {MAX_WIDTH}, got {n}")
    return tuple(layers)


def _architecture(data: dict[str, Any], layers: tuple[int, ...]) -> Architecture:
    depth = len(layers) - 1
    activations = data.get("activations", ["sigmoid"] * depth)
    if not isinstance(activations, list) or len(activations) != depth:
        raise BpxlError(
            f"activations must list one of {'|'.join(ACTIVATIONS)} per weight layer "
            f"({depth}), got {activations!r}"
        )
    for f in activations:
        if f not in ACTIVATIONS:
            raise BpxlError(f"activations: unknown {f!r} (choose from {', '.join(ACTIVATIONS)})")
    if "softmax" in activations[:-1]:
        raise BpxlError("activations: softmax is only allowed on the output layer")
    loss = data.get("loss", "mse")
    if loss not in LOSSES:
        raise BpxlError(f"loss: unknown {loss!r} (choose from {', '.join(LOSSES)})")
    output = activations[-1]
    if (output == "softmax") != (loss == "cross_entropy"):
        raise BpxlError(
            "loss: softmax output and cross_entropy go together (one without the other "
            f"has no simple δ), got {output} with {loss}"
        )
    if loss == "binary_cross_entropy" and output != "sigmoid":
        raise BpxlError(f"loss: binary_cross_entropy needs a sigmoid output, got {output}")
    if output == "softmax" and layers[-1] < 2:
        raise BpxlError("layers: a softmax output needs at least 2 outputs")
    return Architecture(layers, tuple(activations), loss)


def _check_targets(net: Architecture, targets: np.ndarray) -> None:
    if net.loss == "cross_entropy":
        if (targets < 0).any() or not np.allclose(targets.sum(axis=1), 1.0, rtol=0, atol=1e-12):
            raise BpxlError("targets: with cross_entropy each row must be ≥ 0 and sum to 1")
    if net.loss == "binary_cross_entropy" and ((targets < 0) | (targets > 1)).any():
        raise BpxlError("targets: with binary_cross_entropy each target must be in [0, 1]")


def _parameters(
    data: dict[str, Any], layers: tuple[int, ...], bias: str
) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray | None, ...]]:
    """W and b: as given, or drawn from `seed` (Glorot-uniform weights, zero biases)."""
    shapes = [(n_out, n_in) for n_in, n_out in itertools.pairwise(layers)]
    n_weights = sum(r * c for r, c in shapes)
    n_biases = sum(layers[1:]) if bias != "none" else 0
    seed = data.get("seed", 1)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise BpxlError(f"seed must be a whole number ≥ 0, got {seed!r}")
    rng = np.random.default_rng(seed)
    if "weights" in data:
        flat = np.array(_numbers("weights", data["weights"], n_weights))
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
            raise BpxlError('biases given but bias = false: set bias = true or "fixed"')
        return tuple(W), (None,) * len(shapes)
    given = np.array(_numbers("biases", data["biases"], n_biases)) if "biases" in data else None
    b, at = [], 0
    for n_out in layers[1:]:
        b.append(given[at : at + n_out].copy() if given is not None else np.zeros(n_out))
        at += n_out
    return tuple(W), tuple(b)


def _training_defaults(data: dict[str, Any]) -> tuple[tuple[float, ...] | None, int | None]:
    lr = data.get("lr")
    if lr is not None:
        lr = tuple(_numbers("lr", lr))
        if not lr or any(eta <= 0 for eta in lr):
            raise BpxlError(f"lr must be a non-empty list of numbers > 0, got {list(lr)!r}")
    steps = data.get("steps")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise BpxlError(f"steps must be a whole number ≥ 1, got {steps!r}")
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
    clash = sorted(
        set(data)
        & {"layers", "activations", "loss", "bias", "inputs", "targets", "weights", "biases"}
    )
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
        raise BpxlError(f'bias must be true, false or "fixed", got {bias_value!r}')
    bias = BIAS_MODES[bias_value]
    if "inputs" not in data or "targets" not in data:
        raise BpxlError("inputs and targets are required (one row per training sample)")
    inputs = _table("inputs", data["inputs"], layers[0])
    targets = _table("targets", data["targets"], layers[-1])
    if len(inputs) != len(targets):
        raise BpxlError(f"inputs has {len(inputs)} samples but targets has {len(targets)}")
    _check_targets(net, targets)
    W, b = _parameters(data, layers, bias)
    lr, steps = _training_defaults(data)
    description = data.get("description", "")
    if not isinstance(description, str):
        raise BpxlError(f"description must be text, got {description!r}")
    classic = bool(data.get("classic", False))
    return Network(net, bias, inputs, targets, W, b, lr, steps, preset, description, classic)


def structure(fields: Mapping[str, str]) -> Network:
    """A network's structure from the text a workbook's Setup shows (see writer.network_fields):
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
    return Network(
        net,
        bias,
        np.zeros((samples, shape[0])),
        np.zeros((samples, shape[-1])),
        W,
        b,
        preset=preset_name if preset_name in PRESETS else None,
        classic=classic,
    )


def _read(text: str, where: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BpxlError(f"{where}: not valid TOML ({exc})") from None


def _template_text(name: str) -> str:
    """templates/NAME.toml: beside the package in a checkout, inside it once installed."""
    checkout = Path(__file__).resolve().parent.parent / "templates" / f"{name}.toml"
    if checkout.is_file():
        return checkout.read_text(encoding="utf-8")
    return resources.files("backprop_xlsx.templates").joinpath(f"{name}.toml").read_text("utf-8")


def seed(values: Mapping[str, float] | None = None) -> Network:
    """The seed's 2-2-2 network, with any of its named values (i1 … w8) replaced."""
    base = preset(DEFAULT_PRESET)
    if not values:
        return base
    net = from_mapping({k: float(v) for k, v in values.items()})
    same = seed_values(net) == seed_values(base)
    return replace(net, preset=DEFAULT_PRESET if same else None)


def seed_values(net: Network) -> dict[str, float]:
    """A 2-2-2 network's starting values by the seed's names: i1 i2 t1 t2 w1 … w8."""
    (i1, i2), (t1, t2) = net.inputs[0], net.targets[0]
    named = {"i1": i1, "i2": i2, "t1": t1, "t2": t2}
    named |= {f"w{k + 1}": w for k, w in enumerate(net.weights)}
    return {k: float(v) for k, v in named.items()}


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
