"""Where everything lives in the workbook: the one source of truth for sheets, cells and formulas.

The writer turns this layout into cells; the verifier reads the same layout to know what every
cell must hold. Formulas are written once, as templates in the names of the math:

    {w1}        the w1 cell of the same row
    {prev w1}   the w1 cell of the row above (the previous iteration)
    {setup w1}  the w1 cell of the Setup sheet (absolute)
    {eta}       this sheet's learning-rate cell (absolute)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from openpyxl.utils import get_column_letter

from .network import GRADIENTS, INPUTS, PARAMS, QUANTITIES, WEIGHTS

SETUP_SHEET = "Setup"
SUMMARY_SHEET = "Error vs LR"

# Setup sheet: one row per starting value, name in column A, value in column B.
SETUP_FIRST_ROW = 4
SETUP_ROW = {name: SETUP_FIRST_ROW + k for k, name in enumerate(PARAMS)}
SETUP_VALUE_COLUMN = "B"
SETUP_HEADER_ROW = SETUP_FIRST_ROW - 1  # name | value | meaning
# The equations and chain-rule derivations, as text in column A, below the values.
SETUP_EQUATIONS_ROW = SETUP_FIRST_ROW + len(PARAMS) + 2
# The learning rates, right of the values: η (live) | sheet (hyperlink) | final E_total (live).
SETUP_LR_HEADER_ROW = SETUP_HEADER_ROW
SETUP_LR_COLUMNS = ("E", "F", "G")

# LR sheets: η in B1, the header in row 3, iteration 0 (the initial weights) in row 4.
ETA_CELL = "B1"
HEADER_ROW = 3
FIRST_ROW = 4

# Error vs LR sheet: the threshold input, then one row per learning rate, then the iterations.
THRESHOLD_CELL = "B3"
DEFAULT_THRESHOLD = 1e-3
SUMMARY_HEADER_ROW = 5  # η | sheet | final E_total | first iteration below threshold
NEVER = "never"  # what "first iteration below threshold" shows when E_total never gets there
# Columns of the per-LR table on Error vs LR (rows SummaryLayout.lr_row).
SUMMARY_COLUMNS = {"eta": "A", "sheet": "B", "final": "C", "first_below": "D"}


MAX_SHEET_TITLE = 31  # Excel refuses longer sheet names


def lr_sheet_title(eta: float) -> str:
    """`LR 0.1`, `LR 2`: the sheet of one learning rate, distinct for every distinct η.

    `{:g}` (6 significant digits) where it is exact, else the shortest text that reads back as
    the same float (Python's repr), so 0.1234567 and 0.1234568 never share a sheet. The longest
    float repr has 24 characters, so a title never exceeds Excel's 31.
    """
    short = f"{eta:g}"
    title = f"LR {short if float(short) == eta else repr(float(eta))}"
    assert len(title) <= MAX_SHEET_TITLE, title
    return title


def setup_lr_row(j: int) -> int:
    """Row of the j-th learning rate in the Setup sheet's list of learning rates."""
    return SETUP_LR_HEADER_ROW + 1 + j


def is_bpxl_sheet(title: str) -> bool:
    """Whether bpxl makes this sheet (and may rebuild it); any other sheet belongs to the user.

    Case-insensitive, as sheet names are in Excel: a `setup` sheet could not sit beside `Setup`.
    """
    folded = title.casefold()
    if folded in (SETUP_SHEET.casefold(), SUMMARY_SHEET.casefold()):
        return True
    if not folded.startswith("lr "):
        return False
    try:
        float(title[3:])
    except ValueError:
        return False
    return True


def sheet_ref(title: str) -> str:
    """A sheet's name as formulas write it: bare if it can be (Setup), quoted if not ('LR 2')."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z_.]*", title):
        return title
    return "'" + title.replace("'", "''") + "'"


def setup_ref(name: str) -> str:
    """Absolute reference to a starting value on the Setup sheet, e.g. Setup!$B$8."""
    return f"{sheet_ref(SETUP_SHEET)}!${SETUP_VALUE_COLUMN}${SETUP_ROW[name]}"


def _abs(cell: str) -> str:
    col, row = re.fullmatch(r"([A-Z]+)(\d+)", cell).groups()
    return f"${col}${row}"


HEADERS = {name: name for name in QUANTITIES} | {g: f"∂E/∂{g[4:]}" for g in GRADIENTS}

SIGMOID = "=1/(1+EXP(-{x}))"
DELTA_O1 = "({a_o1}-{t1})*{a_o1}*(1-{a_o1})"
DELTA_O2 = "({a_o2}-{t2})*{a_o2}*(1-{a_o2})"

# key -> (formula of iteration 0, formula of every later iteration)
FORMULAS: dict[str, tuple[str, str]] = {
    **{k: ("={setup " + k + "}",) * 2 for k in INPUTS},
    **{w: ("={setup " + w + "}", "={prev " + w + "}-{eta}*{prev dE_d" + w + "}") for w in WEIGHTS},
    "h1": ("={w1}*{i1}+{w2}*{i2}",) * 2,
    "a_h1": (SIGMOID.replace("{x}", "{h1}"),) * 2,
    "h2": ("={w3}*{i1}+{w4}*{i2}",) * 2,
    "a_h2": (SIGMOID.replace("{x}", "{h2}"),) * 2,
    "o1": ("={w5}*{a_h1}+{w6}*{a_h2}",) * 2,
    "a_o1": (SIGMOID.replace("{x}", "{o1}"),) * 2,
    "o2": ("={w7}*{a_h1}+{w8}*{a_h2}",) * 2,
    "a_o2": (SIGMOID.replace("{x}", "{o2}"),) * 2,
    "E1": ("=0.5*({t1}-{a_o1})^2",) * 2,
    "E2": ("=0.5*({t2}-{a_o2})^2",) * 2,
    "E_total": ("={E1}+{E2}",) * 2,
    "dE_dw1": (f"=({DELTA_O1}*{{w5}}+{DELTA_O2}*{{w7}})*{{a_h1}}*(1-{{a_h1}})*{{i1}}",) * 2,
    "dE_dw2": (f"=({DELTA_O1}*{{w5}}+{DELTA_O2}*{{w7}})*{{a_h1}}*(1-{{a_h1}})*{{i2}}",) * 2,
    "dE_dw3": (f"=({DELTA_O1}*{{w6}}+{DELTA_O2}*{{w8}})*{{a_h2}}*(1-{{a_h2}})*{{i1}}",) * 2,
    "dE_dw4": (f"=({DELTA_O1}*{{w6}}+{DELTA_O2}*{{w8}})*{{a_h2}}*(1-{{a_h2}})*{{i2}}",) * 2,
    "dE_dw5": (f"={DELTA_O1}*{{a_h1}}",) * 2,
    "dE_dw6": (f"={DELTA_O1}*{{a_h2}}",) * 2,
    "dE_dw7": (f"={DELTA_O2}*{{a_h1}}",) * 2,
    "dE_dw8": (f"={DELTA_O2}*{{a_h2}}",) * 2,
}

NUMBER_FORMATS = {
    **{k: "0.00" for k in INPUTS},
    **{k: "0.000000000" for k in QUANTITIES if k in WEIGHTS or k[-2] in "ho"},
    **{k: "0.000000E+00" for k in ("E1", "E2", "E_total", *GRADIENTS)},
}


@dataclass(frozen=True)
class Column:
    key: str  # the name in the math and in network.py: "a_h1", "dE_dw5"
    header: str  # the name in the header row: "a_h1", "∂E/∂w5"
    letter: str  # "J"
    number_format: str

    @cached_property
    def _patterns(self) -> tuple[str, str]:
        return tuple(_compile(t) for t in FORMULAS[self.key])

    def formula(self, row: int) -> str:
        """The formula of this column in sheet row `row` (FIRST_ROW is iteration 0)."""
        pattern = self._patterns[0 if row == FIRST_ROW else 1]
        return pattern.format(r=row, p=row - 1)

    def pattern(self) -> str:
        """`formula` as a str.format pattern ({r} this row, {p} the row above), for bulk writing:
        pattern().format(r=row, p=row - 1) == formula(row) for every row after FIRST_ROW."""
        return self._patterns[1]


COLUMNS: tuple[Column, ...] = tuple(
    Column(key, HEADERS[key], get_column_letter(k + 1), NUMBER_FORMATS[key])
    for k, key in enumerate(QUANTITIES)
)
COLUMN = {c.key: c for c in COLUMNS}
LETTER = {c.key: c.letter for c in COLUMNS}

_PLACEHOLDER = re.compile(r"\{(?:(prev|setup) )?(\w+)\}")


def _compile(template: str) -> str:
    """Turn a template into a str.format pattern with {r} (this row) and {p} (previous row)."""

    def cell(match: re.Match[str]) -> str:
        where, name = match.groups()
        if where == "setup":
            return setup_ref(name)
        if name == "eta":
            return _abs(ETA_CELL)
        return LETTER[name] + ("{p}" if where == "prev" else "{r}")

    return _PLACEHOLDER.sub(cell, template)


def row_of_iteration(k: int) -> int:
    return FIRST_ROW + k


def last_row(steps: int) -> int:
    """Sheet row of the last iteration: `steps` updates after the initial weights."""
    return FIRST_ROW + steps


def eta_ref(title: str) -> str:
    """Formula of a live reference to an LR sheet's η, e.g. ='LR 0.1'!$B$1."""
    return f"={sheet_ref(title)}!{_abs(ETA_CELL)}"


def final_e_total_ref(title: str, steps: int) -> str:
    """Formula of a live reference to an LR sheet's last E_total, e.g. ='LR 0.1'!$W$104."""
    return f"={sheet_ref(title)}!${LETTER['E_total']}${last_row(steps)}"


def e_total_ref(title: str, k: int) -> str:
    """Formula of a live reference to E_total of iteration k on an LR sheet, e.g. ='LR 0.1'!W4."""
    return f"={sheet_ref(title)}!{LETTER['E_total']}{row_of_iteration(k)}"


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
        return f'=IFERROR(MATCH(TRUE,{self.lr_range(j)}<{_abs(THRESHOLD_CELL)},0)-1,"{NEVER}")'
