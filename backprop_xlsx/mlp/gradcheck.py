"""The gradient-check sheet: backprop's ∂E/∂θ against a central difference, both by formulas.

One row per trained parameter θ: its value and backprop gradient read live from one LR sheet,
and two full forward passes by formulas with θ nudged to θ ± h, giving
(E(θ + h) − E(θ − h))/2h and its relative error against ∂E/∂θ, with a floor set by the
rounding noise (`noise_formula`; docs/workbook.md, "Gradient check", derives it).
This module is the one map of the sheet: the writer (gradcheck_sheet) and `bpxl verify`
(verify.gradcheck) read the same cells and formulas from it, and NumPy's values too.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from openpyxl.utils import get_column_letter
from openpyxl.utils.cell import absolute_coordinate

from backprop_xlsx.errors import BpxlError
from backprop_xlsx.mlp import layout
from backprop_xlsx.mlp.formulas import ERROR_FORMULAS, fill, names_read
from backprop_xlsx.mlp.network import backprop
from backprop_xlsx.xlsx.formula import sheet_ref

GRADCHECK_SHEET = "Gradient check"

# The yellow inputs and the cells computed from them: label in A, value in B, note in C.
H_CELL = "B3"
ITERATION_CELL = "B4"
THRESHOLD_CELL = "B5"
E_TOTAL_CELL = "B6"
NOISE_CELL = "B7"
FLOOR_CELL = "B8"
LR_SHEET_CELL = "B9"  # the title of the LR sheet checked (text, a link)
DEFAULT_H = 1e-5
DEFAULT_THRESHOLD = 1e-7
NOISE_FACTOR = 8  # noise = 8·ε·max(E_total, S·n_out)/h; the measured worst is 0.2 of ε·…/h

BLOCK_ROW = 11  # "forward pass with θ + h" over its block
HEADER_ROW = 12
FIRST_ROW = 13
# Left of the passes: the parameter, its value, the two gradients and their relative error.
COLUMNS = {"name": "A", "theta": "B", "cd": "C", "backprop": "D", "rel": "E"}
FIRST_PASS_COLUMN = 6  # F

MAX_FORMULAS = 1_000_000  # 2-16-16-1 with 20 samples is 890,000; LibreOffice: ~40 s, 3 GB

SIDES = ("+", "-")


@dataclass(frozen=True)
class PassColumn:
    """One column of a forward pass: z or a of one neuron for one sample, or E_total."""

    key: str  # the LR sheet's key: "h1_s2", "a_o1", "E_total"
    header: str  # "h1⁽²⁾", "a_o1", "E_total"


class GradCheckLayout:
    """Where every cell of the gradient-check sheet is, and what formula it holds.

    `lr_title` is the LR sheet whose iteration is checked; `steps` its last iteration.
    """

    def __init__(self, sheet: layout.SheetLayout, lr_title: str, steps: int) -> None:
        self.sheet = sheet
        self.lr_title = lr_title
        self.steps = steps
        trained = sheet.network.bias == "trained"
        weights = [w for rows in sheet.weight_number for row in rows for w in row]
        biases = [b for layer in sheet.bias_number for b in layer] if trained else []
        self.params: tuple[str, ...] = (*weights, *biases)
        self.row = {p: FIRST_ROW + i for i, p in enumerate(self.params)}
        pass_columns = []
        for layer in range(sheet.depth):
            for s in range(sheet.samples):
                for name in sheet.names[layer + 1]:
                    for key in (name, f"a_{name}"):
                        pass_columns.append(
                            PassColumn(sheet.sample(key, s), sheet.sample_header(key, s))
                        )
        pass_columns.append(PassColumn("E_total", "E_total"))
        self.pass_columns = tuple(pass_columns)
        width = len(pass_columns)
        self.letter = {
            (side, c.key): get_column_letter(FIRST_PASS_COLUMN + i + k * width)
            for k, side in enumerate(SIDES)
            for i, c in enumerate(pass_columns)
        }
        self.last_column = FIRST_PASS_COLUMN + 2 * width - 1
        self.last_row = FIRST_ROW + len(self.params) - 1
        self.loss_terms = sheet.samples * len(sheet.names[-1])
        self._patterns: dict[tuple[str, str, str | None], str] = {}

    # --- size --------------------------------------------------------------------------

    @property
    def formulas(self) -> int:
        """Formula cells of the parameter rows: θ, cd, ∂E/∂θ, relative error, two passes."""
        return len(self.params) * (4 + 2 * len(self.pass_columns))

    def check_size(self) -> None:
        """Refuse a sheet no spreadsheet recalculates in reasonable time, before writing."""
        if self.formulas > MAX_FORMULAS or self.last_column > layout.MAX_COLUMNS:
            raise BpxlError(
                f"the gradient-check sheet of this network needs {self.formulas:,} formulas "
                f"({len(self.params)} parameters × 2 forward passes of "
                f"{len(self.pass_columns):,} cells) and {self.last_column:,} columns; bpxl "
                f"writes at most {MAX_FORMULAS:,} formulas and {layout.MAX_COLUMNS:,} columns "
                "there: use fewer samples or neurons, or leave out --gradient-check"
            )

    # --- formulas ----------------------------------------------------------------------

    def _lr_range(self, key: str) -> str:
        """One column of the LR sheet over every iteration, absolute: 'LR 0.1'!$E$4:$E$104."""
        letter = self.sheet.letter[key]
        first, last = layout.FIRST_ROW, layout.last_row(self.steps)
        return f"{sheet_ref(self.lr_title)}!${letter}${first}:${letter}${last}"

    def _at_iteration(self, key: str) -> str:
        return f"=INDEX({self._lr_range(key)},{absolute_coordinate(ITERATION_CELL)}+1)"

    def e_total_formula(self) -> str:
        return self._at_iteration("E_total")

    def noise_formula(self) -> str:
        """Rounding noise of the central difference, 8·ε·max(E_total, S·n_out)/h.

        E_total sums S·n_out loss terms made from activations of order 1, so each side carries
        rounding of about ε·max(E_total, S·n_out), and the quotient that over h; measured on the
        presets and a 2-16-16-1 tanh net over every η and iteration, at most 0.2 of it at
        h = 1e-5. A gradient below noise/threshold (the floor) is judged by |cd − ∂E/∂θ| ≤ noise.
        """
        e_total, h = E_TOTAL_CELL, H_CELL
        return f"={NOISE_FACTOR}*2^-52*MAX({e_total},{self.loss_terms})/{h}"

    def floor_formula(self) -> str:
        return f"={NOISE_CELL}/{THRESHOLD_CELL}"

    def theta_formula(self, p: str) -> str:
        """θ at the chosen iteration, read from the LR sheet."""
        return self._at_iteration(p)

    def backprop_formula(self, p: str) -> str:
        """∂E/∂θ of the same iteration, read from the LR sheet."""
        return self._at_iteration(f"dE_d{p}")

    def cd_formula(self, p: str) -> str:
        r = self.row[p]
        plus, minus = self.letter["+", "E_total"], self.letter["-", "E_total"]
        return f"=({plus}{r}-{minus}{r})/(2*{absolute_coordinate(H_CELL)})"

    def rel_formula(self, p: str) -> str:
        r = self.row[p]
        cd, bp = f"{COLUMNS['cd']}{r}", f"{COLUMNS['backprop']}{r}"
        return f"=ABS({cd}-{bp})/MAX(ABS({cd}),ABS({bp}),{absolute_coordinate(FLOOR_CELL)})"

    def pass_formula(self, p: str, side: str, key: str) -> str:
        """z, a or E_total of the forward pass with p nudged by +h or −h: the LR sheet's own
        formula with every parameter read from column θ, and p's as (θ ± h)."""
        names = self._reads[key]
        return self._pattern(side, key, p if p in names else None).format(r=self.row[p])

    def _template(self, key: str) -> str:
        """The LR sheet's template of a pass column ({w1}, {a_h1_s2}, …), without '='."""
        sheet = self.sheet
        if key != "E_total":
            return sheet.templates[key][1][1:]  # z and a are alike in every row
        return "+".join(
            ERROR_FORMULAS[sheet.network.net.loss].format(
                t="{" + sheet.sample(f"t{j + 1}", s) + "}",
                a="{" + sheet.sample(f"a_o{j + 1}", s) + "}",
            )
            for s in range(sheet.samples)
            for j in range(len(sheet.names[-1]))
        )

    @functools.cached_property
    def _reads(self) -> dict[str, frozenset[str]]:
        """Pass column key → the names its template reads."""
        return {c.key: names_read(self._template(c.key)) for c in self.pass_columns}

    def _pattern(self, side: str, key: str, nudged: str | None) -> str:
        """The formula of a pass column with `nudged` as (θ ± h), {r} for the row: made once
        per column and parameter it reads, so the rows are str.format, not a regex each."""
        made = self._patterns.get((side, key, nudged))
        if made is None:
            made = self._patterns[side, key, nudged] = self._make_pattern(side, key, nudged)
        return made

    def _make_pattern(self, side: str, key: str, nudged: str | None) -> str:
        sheet, theta = self.sheet, COLUMNS["theta"]

        def cell(where: str | None, name: str) -> str:
            if name in self.row:  # a trained parameter
                value = absolute_coordinate(f"{theta}{self.row[name]}")
                return f"({value}{side}{absolute_coordinate(H_CELL)})" if name == nudged else value
            if name in sheet.setup_row:  # an input, a target, a fixed bias
                return layout.setup_value_ref(sheet.setup_row[name])
            return f"{self.letter[side, name]}{{r}}"

        return "=" + fill(self._template(key), cell)

    def cells(self) -> dict[str, str]:
        """Every formula of the sheet by A1 cell: the inputs' block and every parameter row."""
        out = {
            E_TOTAL_CELL: self.e_total_formula(),
            NOISE_CELL: self.noise_formula(),
            FLOOR_CELL: self.floor_formula(),
        }
        for p in self.params:
            r = self.row[p]
            out[f"{COLUMNS['theta']}{r}"] = self.theta_formula(p)
            out[f"{COLUMNS['cd']}{r}"] = self.cd_formula(p)
            out[f"{COLUMNS['backprop']}{r}"] = self.backprop_formula(p)
            out[f"{COLUMNS['rel']}{r}"] = self.rel_formula(p)
            for side in SIDES:
                for c in self.pass_columns:
                    out[f"{self.letter[side, c.key]}{r}"] = self.pass_formula(p, side, c.key)
        return out

    def describe(self, a1: str) -> str:
        """What a cell of a parameter row is, in words: 'the θ + h pass of w3, a_h1⁽²⁾'."""
        match = re.fullmatch(r"([A-Z]+)(\d+)", a1)
        if match is None:
            return a1
        letters, row = match[1], int(match[2])
        if not FIRST_ROW <= row <= self.last_row:
            return {
                E_TOTAL_CELL: "E_total at the iteration",
                NOISE_CELL: "rounding noise of a central difference",
                FLOOR_CELL: "the relative error's floor",
            }.get(a1, a1)
        p = self.params[row - FIRST_ROW]
        words = {
            COLUMNS["theta"]: f"{p} at the iteration",
            COLUMNS["cd"]: f"central difference of {p}",
            COLUMNS["backprop"]: f"backprop ∂E/∂{p}",
            COLUMNS["rel"]: f"relative error of {p}",
        }
        if letters in words:
            return words[letters]
        for (side, key), letter in self.letter.items():
            if letter == letters:
                header = next(c.header for c in self.pass_columns if c.key == key)
                return f"the θ {side} h pass of {p}, {header}"
        return a1

    # --- NumPy's values ----------------------------------------------------------------

    def values(
        self,
        setup: Mapping[str, float],
        theta: Mapping[str, float],
        gradient: Mapping[str, float],
        e_total: float,
        h: float,
        threshold: float,
    ) -> dict[str, float]:
        """NumPy's value of every formula cell, by A1 cell, for the LR sheet's parameters
        `theta` and gradients `gradient` at the chosen iteration (E_total there: `e_total`)."""
        sheet, P = self.sheet, len(self.params)
        noise = NOISE_FACTOR * 2.0**-52 * max(e_total, self.loss_terms) / h
        floor = noise / threshold
        out = {E_TOTAL_CELL: e_total, NOISE_CELL: noise, FLOOR_CELL: floor}
        passes = {}
        for side, sign in zip(SIDES, (1.0, -1.0), strict=True):
            nudged = {k: np.full(P, float(v)) for k, v in setup.items()}
            for p in self.params:
                nudged[p] = np.full(P, float(theta[p]))
            for i, p in enumerate(self.params):
                nudged[p][i] = theta[p] + sign * h
            x, t, W, b = sheet.parameters(nudged)
            passes[side] = backprop(sheet.network.net, x, t, W, b)
        columns = self._pass_values(passes)
        for i, p in enumerate(self.params):
            r = self.row[p]
            e_plus, e_minus = passes["+"].E_total[i], passes["-"].E_total[i]
            cd = (e_plus - e_minus) / (2 * h)
            g = float(gradient[p])
            out[f"{COLUMNS['theta']}{r}"] = float(theta[p])
            out[f"{COLUMNS['cd']}{r}"] = float(cd)
            out[f"{COLUMNS['backprop']}{r}"] = g
            out[f"{COLUMNS['rel']}{r}"] = float(abs(cd - g) / max(abs(cd), abs(g), floor))
            for (side, key), values in columns.items():
                out[f"{self.letter[side, key]}{r}"] = float(values[i])
        return out

    def _pass_values(self, passes: Mapping[str, object]) -> dict[tuple[str, str], np.ndarray]:
        """(side, key) → the column's value for every parameter row."""
        sheet, out = self.sheet, {}
        for side, run in passes.items():
            for layer in range(sheet.depth):
                for s in range(sheet.samples):
                    for j, name in enumerate(sheet.names[layer + 1]):
                        out[side, sheet.sample(name, s)] = run.z[layer][:, s, j]
                        out[side, sheet.sample(f"a_{name}", s)] = run.a[layer + 1][:, s, j]
            out[side, "E_total"] = run.E_total
        return out

    def at_iteration(
        self, values: Mapping[str, np.ndarray]
    ) -> tuple[dict[str, float], dict[str, float], float]:
        """θ, ∂E/∂θ and E_total of one iteration, from one row of a run's values by key."""
        theta = {p: float(values[p]) for p in self.params}
        gradient = {p: float(values[f"dE_d{p}"]) for p in self.params}
        return theta, gradient, float(values["E_total"])
