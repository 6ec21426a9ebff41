"""exp, tanh and ln that give the same bits under every NumPy: the C library's, per element.

np.exp, np.tanh and np.log are SIMD code that NumPy rewrites between releases: on an AVX-512
machine NumPy 1.26 and 2.4 give other last bits for ~23 % of np.exp's arguments. The training
run's values are the workbook's cached values, so with them a rebuild under another NumPy wrote
another file. Python's math functions call the C library, whatever NumPy is installed; the cost,
~0.1 µs an element, is small beside writing the cell the value goes into.
"""

from __future__ import annotations

import math

import numpy as np


def _exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:  # NumPy's and a spreadsheet's overflow: inf, then #NUM!
        return math.inf


def _log(x: float) -> float:
    if x > 0 or math.isnan(x):
        return math.log(x)
    return -math.inf if x == 0 else math.nan  # as np.log: ln 0 = −inf, ln of x < 0 is NaN


_ufuncs = {f: np.frompyfunc(f, 1, 1) for f in (_exp, math.tanh, _log)}


def _apply(f: object, x: np.ndarray | float) -> np.ndarray:
    return np.asarray(_ufuncs[f](np.asarray(x, dtype=np.float64)), dtype=np.float64)


def exp(x: np.ndarray | float) -> np.ndarray:
    return _apply(_exp, x)


def tanh(x: np.ndarray | float) -> np.ndarray:
    return _apply(math.tanh, x)


def log(x: np.ndarray | float) -> np.ndarray:
    return _apply(_log, x)
