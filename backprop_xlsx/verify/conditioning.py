"""Where a training run cannot be checked cell by cell: it magnifies rounding.

Once E reaches the rounding floor, RMSprop's and Adam's g/√v still steps by about η whatever the
last bits of g, so a difference of one rounding doubles every step (measured on the seed's
RMSprop at η 0.1 from iteration 160: LibreOffice, whose subtraction gives an exact 0 where the
output meets its target, stops there, while NumPy oscillates). Two correct engines then disagree
by more than any tolerance, and comparing those cells would flag a correct workbook. So NumPy
runs a second time one rounding away at every step (every Setup value and η × (1 + 2⁻⁵²)), and
from the first iteration where the two runs part by more than a thousandth of the tolerance,
the values are not compared; the formulas are still checked on changed inputs, and the report
says which iterations were left out.
"""

from __future__ import annotations

import numpy as np

from backprop_xlsx.mlp.optim import HYPERPARAMETERS
from backprop_xlsx.report import Report
from backprop_xlsx.verify.lr_sheet import LrSheet
from backprop_xlsx.verify.lr_values import numpy_sheets

NORMALIZING = ("rmsprop", "adam", "adamw")  # g/√v: a step of about η from any tiny g
NUDGE = 2.0**-52
MARGIN = 1e-3  # of the tolerance: an engine's own roundings may be a few hundred NUDGEs


def reproducible_until(
    setup: dict[str, float], sheets: list[LrSheet], expected: dict[str, np.ndarray], report: Report
) -> dict[str, int]:
    """Title → the first iteration whose values a rounding can change past the tolerance, for
    the sheets of a normalizing optimizer where there is one."""
    out: dict[str, int] = {}
    groups: dict[tuple[int, str], list[LrSheet]] = {}
    for sheet in sheets:
        if sheet.title in expected and sheet.layout.optimizer.name in NORMALIZING:
            key = (sheet.rows - 1, sheet.layout.optimizer.name)
            groups.setdefault(key, []).append(sheet)
    nudged_setup = {k: v if k in HYPERPARAMETERS else v * (1 + NUDGE) for k, v in setup.items()}
    for (steps, _), group in groups.items():
        etas = [s.eta() * (1 + NUDGE) for s in group]  # type: ignore[operator]
        nudged = numpy_sheets(nudged_setup, etas, steps, group[0].layout)
        for sheet, other in zip(group, nudged, strict=True):
            want = expected[sheet.title]
            with np.errstate(all="ignore"):
                finite = np.where(np.isfinite(want), np.abs(want), 0.0)
                scale = finite.max(axis=0, initial=0.0)
                allowed = MARGIN * (report.rtol * (np.abs(want) + scale) + report.atol)
                apart = ~(np.abs(other - want) <= allowed)
            rows = np.flatnonzero(apart.any(axis=1))
            if rows.size:
                out[sheet.title] = int(rows[0])
    return out
