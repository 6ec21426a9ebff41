"""The texts that name and explain the optimizers in a workbook: Setup's optimizer column and
equations, each training sheet's note. The sheets themselves are sheets.py's; the comparison
sheet (Optimizers) is Error vs LR's layout over every training sheet."""

from __future__ import annotations

from collections.abc import Sequence

from backprop_xlsx.mlp import layout
from backprop_xlsx.mlp.optim import OPTIMIZERS, Optimizer


def optimizer_names(titles: Sequence[str]) -> list[str]:
    """torch.optim's class of each training sheet: SGD, RMSprop, Adam, AdamW."""
    out = []
    for title in titles:
        found = layout.training_sheet(title)
        assert found is not None, title
        out.append(OPTIMIZERS[found[0]].torch.partition("(")[0])
    return out


def optimizer_note(optimizer: Optimizer) -> str:
    """The training sheet's note: its update rule, as torch.optim's docs write it."""
    return (
        f"Each row is one {optimizer.label} step, torch.optim.{optimizer.torch}: "
        f"{optimizer.rule}, with g = ∂E/∂w of the row above and t the iteration; the same for "
        "every weight and trained bias. The state (columns v_, m_, m̂_, v̂_) starts at 0"
        + (", β1ᵗ and β2ᵗ (β1ᵗ = β1ᵗ⁻¹·β1) at 1. " if optimizer.powers else ". ")
        + "Iteration 0 holds the initial weights from Setup; the hyperparameters are on Setup."
    )


def optimizer_equations(optimizers: Sequence[str]) -> list[tuple[str, bool]]:
    """Setup's lines on the update rules, after the network's equations: (text, heading)."""
    lines = [("Update rules (torch.optim; g = ∂E/∂w of the row above, t = iteration)", True)]
    for name in optimizers:
        o = OPTIMIZERS[name]
        label = "Gradient descent" if name == "sgd" else o.label
        lines.append((f"{label}: {o.rule}    torch.optim.{o.torch}", False))
    return lines
