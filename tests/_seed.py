"""The seed network in the assignment's own names, i1 i2 t1 t2 w1 … w8, for the tests that
change one of them (a network file in those names is the product's way to do the same)."""

from __future__ import annotations

from collections.abc import Mapping

from backprop_xlsx.mlp import description

# The workbook the verify and hostile-input tests spoil (conftest's seed_built): two sheets, one
# that converges and one that overshoots, long enough for every column to move.
BOOK_ETAS = (0.5, 2.0)
BOOK_STEPS = 60


def seed_values() -> dict[str, float]:
    """The seed preset's starting values by name."""
    net = description.preset("seed")
    (i1, i2), (t1, t2) = net.inputs[0], net.targets[0]
    named = {"i1": i1, "i2": i2, "t1": t1, "t2": t2}
    named |= {f"w{k + 1}": w for k, w in enumerate(net.weights)}
    return {k: float(v) for k, v in named.items()}


def seed(values: Mapping[str, float] | None = None) -> description.Network:
    """The seed preset, or the 2-2-2 network of these named values (a network of its own)."""
    if not values or dict(values) == seed_values():
        return description.preset("seed")
    return description.from_mapping({k: float(v) for k, v in values.items()})
