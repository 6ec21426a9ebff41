"""What `bpxl verify` needs to know of the optimizers: each training sheet's columns, from its
title (`Adam 0.05` has Adam's state columns), and the ranges of the hyperparameters it draws
for the formula check's changed inputs.

The changed inputs draw every hyperparameter on its own, in ranges that keep them apart (β1 of
0.5-0.95 and β2 of 0.6-0.999 differ in every set, so a β1 where β2 belongs gives a wrong
value), and ε far above torch's 1e-8, so an ε left out or moved inside the √ shows.
"""

from __future__ import annotations

from collections.abc import Sequence

from backprop_xlsx.mlp import layout
from backprop_xlsx.mlp.optim import HYPERPARAMETERS, hyper_keys

HYPER_RANGES = {
    "mu": (0.3, 0.95),
    "beta1": (0.5, 0.95),
    "beta2": (0.6, 0.999),
    "alpha": (0.6, 0.999),
    "eps": (0.01, 0.3),
    "weight_decay": (0.01, 0.5),
}
assert set(HYPER_RANGES) == set(HYPERPARAMETERS)


def optimizer_layouts(base: layout.SheetLayout, titles: Sequence[str]) -> list[layout.SheetLayout]:
    """The layout of each training sheet: the network's, with its optimizer's columns and the
    Setup rows of every hyperparameter the workbook's optimizers read (all share one Setup)."""
    optimizers = []
    for title in titles:
        found = layout.training_sheet(title)
        assert found is not None, title
        optimizers.append(found[0])
    if set(optimizers) == {"sgd"}:
        return [base] * len(titles)
    shown = {k: HYPERPARAMETERS[k].default for k in hyper_keys(optimizers)}
    made: dict[str, layout.SheetLayout] = {}
    for name in optimizers:
        if name not in made:
            made[name] = layout.SheetLayout(
                base.network,
                iteration_column=base.iteration_column,
                optimizer=name,
                hyper=shown,
            )
    return [made[name] for name in optimizers]
