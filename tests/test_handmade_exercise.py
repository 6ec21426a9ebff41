"""`bpxl build --exercise`: the usual workbook with chosen columns left for a student to fill.

The empty cells are yellow with a note; every other cell is as `bpxl build` writes it. Filled in
with the right formulas (in the student's own spelling for one of them) and recalculated by real
LibreOffice, `bpxl verify` passes it; one wrong column, or columns left empty, fail it.
"""

from __future__ import annotations

from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner

from backprop_xlsx.cli import cli
from backprop_xlsx.mlp import layout
from backprop_xlsx.mlp.description import PRESETS, load_network

STEPS = 6


def build(tmp_path: Path, *args: str, name: str = "ex.xlsx", eta: float = 0.5) -> Path:
    out = tmp_path / name
    result = CliRunner().invoke(
        cli, ["build", "--steps", str(STEPS), "--lr", f"{eta}", "--out", str(out), *args]
    )
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("preset", PRESETS)
def test_every_delta_and_gradient_column_is_left_empty_yellow_with_a_note(
    tmp_path: Path, preset: str
) -> None:
    network = load_network(None, preset)
    eta = min(network.lr or (0.5,))  # moons' 40 summed samples overflow at 0.5 in full batch
    path = build(tmp_path, "--exercise", "--preset", preset, eta=eta)
    sheet = layout.SheetLayout(network)
    ws = openpyxl.load_workbook(path)[layout.lr_sheet_title(eta)]
    blank = [c for c in sheet.columns if c.header.startswith(("δ", "∂E/∂"))]
    assert blank, preset
    for column in sheet.columns:
        first = ws[f"{column.letter}{layout.FIRST_ROW}"]
        last = ws[f"{column.letter}{layout.last_row(STEPS)}"]
        if column in blank:
            assert first.value is None and last.value is None, column.header
            assert first.fill.start_color.rgb.endswith("FFFF00")
            assert last.fill.start_color.rgb.endswith("FFFF00")
            assert column.header in first.comment.text
        else:
            assert first.value == column.formula(layout.FIRST_ROW), column.header
            assert last.value == column.formula(layout.last_row(STEPS)), column.header


def test_blank_chooses_columns_by_header_or_key(tmp_path: Path) -> None:
    path = build(tmp_path, "--blank", "a_h1", "--blank", "dE_dw3")
    ws = openpyxl.load_workbook(path)["LR 0.5"]
    letters = layout.SEED_LAYOUT.letter
    empty = {
        key
        for key, letter in letters.items()
        if ws[f"{letter}{layout.FIRST_ROW + 1}"].value is None
    }
    assert empty == {"a_h1", "dE_dw3"}


def test_an_unknown_blank_column_is_one_error_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["build", "--blank", "zz", "--out", str(tmp_path / "x.xlsx")])
    assert result.exit_code == 2
    assert "--blank 'zz' is not a column" in result.output
    assert not (tmp_path / "x.xlsx").exists()


def _fill(path: Path, out: Path, wrong: str | None = None) -> Path:
    """The student's work: every empty cell gets its formula; ∂E/∂w6 in their own spelling."""
    wb = openpyxl.load_workbook(path)
    ws = wb["LR 0.5"]
    at = layout.SEED_LAYOUT.letter
    for column in layout.SEED_LAYOUT.columns:
        if not column.key.startswith("dE_"):
            continue
        for row in range(layout.FIRST_ROW, layout.last_row(STEPS) + 1):
            formula = column.formula(row)
            t1, a_o1, a_h2 = (f"{at[k]}{row}" for k in ("t1", "a_o1", "a_h2"))
            if column.key == "dE_dw6":
                formula = f"=({a_o1}-{t1})*{a_o1}*(1-{a_o1})*{a_h2}"
            if column.key == wrong:  # the course template's bug: a_h1's derivative for w3
                a_h1 = f"{at['a_h1']}{row}"
                formula = formula.replace(f"{a_h2}*(1-{a_h2})", f"{a_h1}*(1-{a_h1})")
                assert a_h1 in formula
            ws[f"{column.letter}{row}"] = formula
    wb.save(out)
    return out


@pytest.mark.slow
def test_verify_grades_the_filled_in_exercise(tmp_path: Path, soffice: str) -> None:
    path = build(tmp_path, "--exercise")
    runner = CliRunner()
    assert runner.invoke(cli, ["verify", str(path)]).exit_code == 1  # nothing filled in yet
    filled = _fill(path, tmp_path / "filled.xlsx")
    result = runner.invoke(cli, ["verify", str(filled)])
    assert result.exit_code == 0, result.output
    wrong = _fill(path, tmp_path / "wrong.xlsx", wrong="dE_dw3")
    result = runner.invoke(cli, ["verify", str(wrong)])
    assert result.exit_code == 1
    letter = layout.SEED_LAYOUT.letter["dE_dw3"]
    assert f"'LR 0.5'!{letter}{layout.FIRST_ROW}" in result.output
