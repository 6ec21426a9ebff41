"""What each column of the assignment's table means: the textbook 2-2-2 formulas, in NumPy.

Every quantity is a function of the cells it depends on: the same row for everything computed,
the row above for a weight update. Evaluated on a row's own cells it gives the value the cell
must hold; evaluated on random consistent rows it gives the meaning a formula must have. Mazur's
worked example adds fixed biases b1 (both hidden units) and b2 (both outputs).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .tables import COMPUTED, GRADIENTS, INPUTS, WEIGHTS

Row = Mapping[str, Any]


def sigmoid(x: Any) -> Any:
    """The textbook's, in plain NumPy: the grader's meaning of a column is written apart from
    bpxl's own network code, so a slip there cannot pass for a student's right answer."""
    return 1.0 / (1.0 + np.exp(-x))


def _bias(c: Row, name: str) -> Any:
    return c[name] if name in c else 0.0


def _delta1(c: Row) -> Any:
    return (c["a_o1"] - c["t1"]) * c["a_o1"] * (1 - c["a_o1"])


def _delta2(c: Row) -> Any:
    return (c["a_o2"] - c["t2"]) * c["a_o2"] * (1 - c["a_o2"])


# quantity → (value from this row c, the row above p and η; its A1 template)
_ROW: dict[str, tuple[Callable[[Row, Row, Any], Any], str]] = {
    "h1": (lambda c, p, e: c["w1"] * c["i1"] + c["w2"] * c["i2"] + _bias(c, "b1"),
           "{w1}*{i1}+{w2}*{i2}"),
    "a_h1": (lambda c, p, e: sigmoid(c["h1"]), "1/(1+EXP(-{h1}))"),
    "h2": (lambda c, p, e: c["w3"] * c["i1"] + c["w4"] * c["i2"] + _bias(c, "b1"),
           "{w3}*{i1}+{w4}*{i2}"),
    "a_h2": (lambda c, p, e: sigmoid(c["h2"]), "1/(1+EXP(-{h2}))"),
    "o1": (lambda c, p, e: c["w5"] * c["a_h1"] + c["w6"] * c["a_h2"] + _bias(c, "b2"),
           "{w5}*{a_h1}+{w6}*{a_h2}"),
    "a_o1": (lambda c, p, e: sigmoid(c["o1"]), "1/(1+EXP(-{o1}))"),
    "o2": (lambda c, p, e: c["w7"] * c["a_h1"] + c["w8"] * c["a_h2"] + _bias(c, "b2"),
           "{w7}*{a_h1}+{w8}*{a_h2}"),
    "a_o2": (lambda c, p, e: sigmoid(c["o2"]), "1/(1+EXP(-{o2}))"),
    "E1": (lambda c, p, e: 0.5 * (c["t1"] - c["a_o1"]) ** 2, "1/2*({t1}-{a_o1})^2"),
    "E2": (lambda c, p, e: 0.5 * (c["t2"] - c["a_o2"]) ** 2, "1/2*({t2}-{a_o2})^2"),
    "E_total": (lambda c, p, e: c["E1"] + c["E2"], "{E1}+{E2}"),
    "∂E/∂w5": (lambda c, p, e: _delta1(c) * c["a_h1"],
               "({a_o1}-{t1})*{a_o1}*(1-{a_o1})*{a_h1}"),
    "∂E/∂w6": (lambda c, p, e: _delta1(c) * c["a_h2"],
               "({a_o1}-{t1})*{a_o1}*(1-{a_o1})*{a_h2}"),
    "∂E/∂w7": (lambda c, p, e: _delta2(c) * c["a_h1"],
               "({a_o2}-{t2})*{a_o2}*(1-{a_o2})*{a_h1}"),
    "∂E/∂w8": (lambda c, p, e: _delta2(c) * c["a_h2"],
               "({a_o2}-{t2})*{a_o2}*(1-{a_o2})*{a_h2}"),
}  # fmt: skip

_HIDDEN_GRADIENT = "(({a_o1}-{t1})*{a_o1}*(1-{a_o1})*{%s}+({a_o2}-{t2})*{a_o2}*(1-{a_o2})*{%s})"
for _k, (_h, _wa, _wb, _i) in enumerate(
    [("a_h1", "w5", "w7", "i1"), ("a_h1", "w5", "w7", "i2"),
     ("a_h2", "w6", "w8", "i1"), ("a_h2", "w6", "w8", "i2")], start=1
):  # fmt: skip
    _ROW[f"∂E/∂w{_k}"] = (
        lambda c, p, e, h=_h, wa=_wa, wb=_wb, i=_i: (
            (_delta1(c) * c[wa] + _delta2(c) * c[wb]) * c[h] * (1 - c[h]) * c[i]
        ),
        _HIDDEN_GRADIENT % (_wa, _wb) + f"*{{{_h}}}*(1-{{{_h}}})*{{{_i}}}",
    )
for _w, _g in zip(WEIGHTS, GRADIENTS, strict=True):
    _ROW[_w] = (lambda c, p, e, w=_w, g=_g: p[w] - e * p[g], f"{{{_w}'}}-{{eta}}*{{{_g}'}}")


def value(quantity: str, cur: Row, prev: Row, eta: Any) -> Any:
    """What `quantity` must be, from this row's cells, the previous row's, and η."""
    return _ROW[quantity][0](cur, prev, eta)


def reads(quantity: str) -> set[str]:
    """The quantities `quantity` is computed from (a trailing ' marks the row above)."""
    return set(re.findall(r"\{([^}]+)\}", _ROW[quantity][1])) - {"eta"}


def should_read(
    quantity: str, row: int, name: Callable[[str, int], str], eta: str, biases: set[str]
) -> str:
    """The textbook formula for `quantity` in `row`, in A1 with the table's own columns."""
    pattern = _ROW[quantity][1]
    if quantity in ("h1", "h2") and "b1" in biases:
        pattern += "+{b1}"
    if quantity in ("o1", "o2") and "b2" in biases:
        pattern += "+{b2}"

    def sub(m: re.Match[str]) -> str:
        key = m[1]
        if key == "eta":
            return eta
        return name(key[:-1], row - 1) if key.endswith("'") else name(key, row)

    return "=" + re.sub(r"\{([^}]+)\}", sub, pattern)


def random_rows(n: int, rng: np.random.Generator, biases: set[str]) -> tuple[dict, dict, Any]:
    """n random, self-consistent pairs of rows (the row above, this row) and η.

    The inputs and targets stay from row to row, as in the assignment; each row is computed
    from its leaves by the textbook formulas, so a formula that says the same thing another
    way (E1 + E2 written out, σ written with EXP) agrees, and one that reads the wrong cell
    (t2 where t1 belongs) does not, even where the file's own numbers hide it."""
    prev: dict[str, Any] = {q: rng.uniform(0.01, 0.99, n) for q in INPUTS}
    for w in WEIGHTS:
        prev[w] = rng.uniform(-1.0, 1.0, n)
    for b in biases:
        prev[b] = rng.uniform(-1.0, 1.0, n)
    eta = rng.uniform(0.1, 2.0, n)
    for q in COMPUTED:
        prev[q] = value(q, prev, prev, eta)
    cur = {q: prev[q] for q in (*INPUTS, *biases)}
    for w in WEIGHTS:
        cur[w] = value(w, cur, prev, eta)
    for q in COMPUTED:
        cur[q] = value(q, cur, prev, eta)
    return cur, prev, eta
