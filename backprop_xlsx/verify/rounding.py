"""How far rounding alone can move a formula's value: a forward error bound, run beside it.

The verifier runs each formula found in a workbook on changed inputs and compares it with
network.py's value of the same quantity, computed from the same inputs in another order (a
matrix product instead of a left-to-right sum, say). Both are right to within rounding, and
rounding is not a fixed fraction of the result: a sum of large terms that cancel to a small one
is off by u·Σ|terms| (u = 2⁻⁵³), which can be 10⁶ times u·|sum|. So a fixed relative tolerance
either flags a correct formula (deep nets, long runs: terms grow) or lets a wrong one through.

So `BOUNDED` runs each formula with a running error bound beside its value (`Bounded`), and
`close` allows a few times that bound; a wrong formula is off by the size of a value, orders of
magnitude more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from backprop_xlsx.xlsx.formula import COMPARE, Algebra, pick

U = 2.0**-53  # unit roundoff of a double
ULP_FUNCTION = 2 * U  # exp, ln, tanh, ^: NumPy's are within an ulp or two of the exact result
SAFETY = 4.0  # both sides' rounding (2·e), twice over
TINY = 1e-300  # what underflow to subnormal numbers can lose, absolutely


@dataclass(frozen=True, slots=True)
class Bounded:
    """A value, its magnitude and its error bound (arrays of one shape, or scalars), elementwise:

    * v: the value, computed exactly as NumPy computes it;
    * m: the magnitude, the formula evaluated on the absolute values of its operands (Σ|terms|
      for a sum, |a|·|b| for a product): u·m bounds the rounding of any order of the same sums;
    * e: a bound on |v − the exact value of the formula on the same inputs|, by first-order
      running error analysis (Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1):
      each operation adds u·m and propagates its operands' errors through its derivative.

    A correct formula and network.py then differ by at most about 2·e (each side's own
    rounding, both bounded by the same e since m does not depend on the order)."""

    v: Any
    m: Any
    e: Any


def exact(x: Any) -> Bounded:
    """An input: exact, as both sides read the same double."""
    x = np.asarray(x, dtype=np.float64)
    return Bounded(x, np.abs(x), 0.0)


def exact_inputs(values: dict[str, Any]) -> dict[str, Bounded]:
    """A formula's Env scope (cur, prev, setup) as exact inputs, lifted once for all formulas."""
    return {key: exact(v) for key, v in values.items()}


def _constant(c: np.float64) -> Bounded:
    return Bounded(c, abs(c), np.float64(0.0))


def _neg(a: Bounded) -> Bounded:
    return Bounded(-a.v, a.m, a.e)


WHOLE = 2.0**53  # whole numbers below this add and multiply exactly


def _whole(x: Bounded) -> bool:
    """Whether x is exact (a scalar error of 0, as inputs and constants carry) and whole."""
    if np.ndim(x.e) or x.e != 0:
        return False
    with np.errstate(invalid="ignore"):
        return bool(np.all(np.trunc(x.v) == x.v))


def _exact_whole(a: Bounded, b: Bounded, v: Any) -> bool:
    """Whole operands and a whole result below 2⁵³: + − · are exact (row and sample numbers)."""
    return _whole(a) and _whole(b) and bool(np.all(np.abs(v) < WHOLE))


def _add(a: Bounded, b: Bounded) -> Bounded:
    m, v = a.m + b.m, a.v + b.v
    return Bounded(v, m, 0.0 if _exact_whole(a, b, v) else a.e + b.e + U * m)


def _sub(a: Bounded, b: Bounded) -> Bounded:
    m, v = a.m + b.m, a.v - b.v
    return Bounded(v, m, 0.0 if _exact_whole(a, b, v) else a.e + b.e + U * m)


def _mul(a: Bounded, b: Bounded) -> Bounded:
    m, v = a.m * b.m, a.v * b.v
    if _exact_whole(a, b, v):
        return Bounded(v, m, 0.0)
    e = np.abs(a.v) * b.e + np.abs(b.v) * a.e + a.e * b.e + U * m
    return Bounded(v, m, e)


def _div(a: Bounded, b: Bounded) -> Bounded:
    v = a.v / b.v
    room = np.abs(b.v) - b.e  # |b| can shrink to this within its error
    e = np.where(room > 0, (a.e + np.abs(v) * b.e) / np.where(room > 0, room, 1.0), np.inf)
    e = np.where(b.e == 0, np.where(b.v == 0, 0.0, a.e / np.abs(b.v)), e)  # an exact divisor
    m = a.m / np.abs(b.v)
    return Bounded(v, m, e + U * m)


def _pow(a: Bounded, b: Bounded) -> Bounded:
    v = np.power(a.v, b.v)
    # ∂/∂a = b·a^(b−1), ∂/∂b = a^b·ln a; a term whose error is 0 adds nothing (0·inf)
    da = np.where(a.e > 0, np.abs(b.v * np.power(a.v, b.v - 1)) * a.e, 0.0)
    db = np.where(b.e > 0, np.abs(v * np.log(np.abs(a.v))) * b.e, 0.0)
    m = np.where(b.v >= 1, np.power(a.m, b.v), np.abs(v))
    return Bounded(v, m, da + db + a.e * a.e + ULP_FUNCTION * np.abs(v) + U * m)


def _exp(x: Bounded) -> Bounded:
    v = np.exp(x.v)
    return Bounded(v, np.abs(v), v * np.expm1(x.e) + ULP_FUNCTION * v)


def _ln(x: Bounded) -> Bounded:
    v = np.log(x.v)
    room = x.v - x.e
    e = np.where(room > 0, x.e / np.where(room > 0, room, 1.0), np.inf)
    return Bounded(v, np.abs(v), e + ULP_FUNCTION * np.abs(v))


def _tanh(x: Bounded) -> Bounded:
    v = np.tanh(x.v)
    return Bounded(v, np.abs(v), x.e + ULP_FUNCTION * np.abs(v))  # |tanh′| ≤ 1


def _sqrt(x: Bounded) -> Bounded:
    """√x is correctly rounded; its input's error moves it by at most the span of √ over
    [x − e, x + e] (no derivative bound, which is infinite at 0)."""
    v = np.sqrt(x.v)
    span = np.sqrt(x.v + x.e) - np.sqrt(np.maximum(x.v - x.e, 0.0))
    return Bounded(v, np.abs(v), np.where(x.e > 0, span, 0.0) + U * np.abs(v))


def _max(*args: Bounded) -> Bounded:
    v, m, e = args[0].v, args[0].m, args[0].e
    for other in args[1:]:
        v, m, e = np.maximum(v, other.v), np.maximum(m, other.m), np.maximum(e, other.e)
    return Bounded(v, m, e)


def _abs(x: Bounded) -> Bounded:
    return Bounded(np.abs(x.v), x.m, x.e)  # exact


def _if(condition: Bounded, yes: Bounded, no: Bounded) -> Bounded:
    """The chosen branch; where the condition could go either way, the gap between the two."""
    take = np.asarray(condition.v) != 0
    unsure = (condition.e > 0) & (np.abs(condition.v) <= condition.e)
    e = np.where(take, yes.e, no.e)
    e = np.where(unsure, np.abs(yes.v - no.v) + np.maximum(yes.e, no.e), e)
    return Bounded(np.where(take, yes.v, no.v), np.where(take, yes.m, no.m), e)


def _quotient(a: Bounded, b: Bounded) -> Bounded:
    """Exact for exact whole operands below 2⁵³; else anything within a whole of it."""
    with np.errstate(all="ignore"):
        v = np.trunc(a.v / b.v)
    if _whole(a) and _whole(b) and bool(np.all(np.abs(a.v) < WHOLE)):
        return Bounded(v, np.abs(v), 0.0)
    return Bounded(v, np.abs(v), np.ones_like(v) + np.abs(v) * U)


def _mod(a: Bounded, b: Bounded) -> Bounded:
    """Exact for exact operands (fmod is exact); else anything in [0, b)."""
    with np.errstate(all="ignore"):
        v = np.where(np.asarray(b.v) == 0, np.nan, np.mod(a.v, b.v))
    if np.ndim(a.e) == 0 and np.ndim(b.e) == 0 and a.e == 0 and b.e == 0:
        return Bounded(v, np.abs(v), 0.0)
    return Bounded(v, np.abs(v), np.abs(b.v) + 0 * v)


def _index(table: Bounded, r: Bounded, c: Bounded | None = None) -> Bounded:
    """The table's entry at (r, c); a position that is not exact could be any entry: no bound."""
    c = c if c is not None else Bounded(np.float64(1.0), np.float64(1.0), 0.0)
    v, m = pick(table.v, r.v, c.v), pick(table.m, r.v, c.v)
    e = pick(np.broadcast_to(table.e, np.shape(table.v)), r.v, c.v)
    unsure = (np.asarray(r.e) > 0) | (np.asarray(c.e) > 0)
    return Bounded(v, m, np.where(unsure, np.inf, e))


def _compare(op: Any) -> Any:
    """1 or 0; its error is 1 where the operands are within their errors of each other."""

    def run(a: Bounded, b: Bounded) -> Bounded:
        v = op(a.v, b.v).astype(np.float64)
        slack = a.e + b.e
        unsure = (slack > 0) & (np.abs(a.v - b.v) <= slack)
        return Bounded(v, v, unsure.astype(np.float64))

    return run


BOUNDED = Algebra(
    binary={"+": _add, "-": _sub, "*": _mul, "/": _div, "^": _pow},
    compare={op: _compare(fn) for op, fn in COMPARE.items()},
    functions={
        "EXP": _exp,
        "LN": _ln,
        "TANH": _tanh,
        "MAX": _max,
        "IF": _if,
        "ABS": _abs,
        "SQRT": _sqrt,
        "QUOTIENT": _quotient,
        "MOD": _mod,
        "INDEX": _index,
    },
    negative=_neg,
    constant=_constant,
    lift=None,  # the Env holds Bounded values already: `exact_inputs`
)


def close(found: Bounded, expected: np.ndarray) -> np.ndarray:
    """Where a formula's value and network.py's agree to within rounding (elementwise).

    Equal values agree (infinities of one sign too); NaN agrees with nothing, and neither
    does a value whose bound is infinite (it could be anything: a formula bpxl writes never
    gets there on the verifier's bounded inputs).
    """
    with np.errstate(all="ignore"):
        got = np.asarray(found.v, dtype=np.float64)
        diff = np.abs(got - expected)
        return (got == expected) | (diff <= tolerance(found))


def tolerance(found: Bounded) -> np.ndarray:
    """The allowed |found − expected| of `close`; infinite bounds allow nothing."""
    e = np.asarray(found.e, dtype=np.float64)
    return np.where(np.isfinite(e), SAFETY * e + TINY, -1.0)
