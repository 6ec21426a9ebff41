"""The comparison sheet (Error vs LR, or Optimizers): where its cells are, and the live
references it makes into the training sheets.

It depends on how many sheets there are and on each sheet's E_total column, so it is a small
layout of its own beside the training sheet's; writer and verifier both read it.
"""

from __future__ import annotations

from dataclasses import dataclass

from openpyxl.utils import get_column_letter
from openpyxl.utils.cell import absolute_coordinate

from backprop_xlsx.mlp.layout import ETA_CELL, last_row, row_of_iteration
from backprop_xlsx.xlsx.formula import sheet_ref

# The threshold input, then one row per learning rate, then the iterations.
THRESHOLD_CELL = "B3"
DEFAULT_THRESHOLD = 1e-3
SUMMARY_HEADER_ROW = 5  # η | sheet | final E_total | first iteration below threshold
NEVER = "never"  # what "first iteration below threshold" shows when E_total never gets there
# Columns of the per-LR table (rows SummaryLayout.lr_row).
SUMMARY_COLUMNS = {"eta": "A", "sheet": "B", "final": "C", "first_below": "D"}


def eta_ref(title: str) -> str:
    """Formula of a live reference to an LR sheet's η, e.g. ='LR 0.1'!$B$1."""
    return f"={sheet_ref(title)}!{absolute_coordinate(ETA_CELL)}"


def final_e_total_ref(title: str, steps: int, letter: str) -> str:
    """Formula of a live reference to an LR sheet's last E_total, e.g. ='LR 0.1'!$W$104.

    `letter` is the E_total column of the sheet's layout (the seed's by default)."""
    return f"={sheet_ref(title)}!${letter}${last_row(steps)}"


def e_total_pattern(title: str, letter: str) -> str:
    """A live reference to E_total on an LR sheet with its row left as {s}, e.g. ='LR 0.1'!W{s}:
    the pattern of the E_total table's streamed rows."""
    return f"={sheet_ref(title)}!{letter}{{s}}"


def e_total_ref(title: str, k: int, letter: str) -> str:
    """Formula of a live reference to E_total of iteration k on an LR sheet, e.g. ='LR 0.1'!W4."""
    return e_total_pattern(title, letter).format(s=row_of_iteration(k))


@dataclass(frozen=True)
class SummaryLayout:
    """Positions on the Error vs LR sheet, which depend on how many learning rates there are."""

    n_lr: int
    steps: int

    def lr_row(self, j: int) -> int:
        """Row of the j-th learning rate in the per-LR table (η, sheet, final E, first below)."""
        return SUMMARY_HEADER_ROW + 1 + j

    @property
    def table_header_row(self) -> int:
        """Header row of the E_total-per-iteration table: iteration | LR … | LR …"""
        return SUMMARY_HEADER_ROW + self.n_lr + 3

    def iteration_row(self, k: int) -> int:
        return self.table_header_row + 1 + k

    @staticmethod
    def lr_column(j: int) -> str:
        """Column of the j-th learning rate in the per-iteration table (A holds the iteration)."""
        return get_column_letter(j + 2)

    def lr_range(self, j: int) -> str:
        """The j-th learning rate's E_total over all iterations in the per-iteration table."""
        col = self.lr_column(j)
        return f"{col}{self.iteration_row(0)}:{col}{self.iteration_row(self.steps)}"

    def first_below_formula(self, j: int) -> str:
        """First iteration whose E_total is below the threshold, or NEVER.

        Written as a CSE array formula (the comparison runs over a range), which both Excel and
        LibreOffice evaluate; MATCH gives a 1-based position, iteration numbers start at 0.
        """
        below = f"{self.lr_range(j)}<{absolute_coordinate(THRESHOLD_CELL)}"
        return f'=IFERROR(MATCH(TRUE,{below},0)-1,"{NEVER}")'
