"""Gnumeric, a second spreadsheet engine independent of LibreOffice, recalculates the workbook.

`ssconvert --recalc` opens the xlsx, recomputes every formula with Gnumeric's own engine and
writes an xlsx with the values cached; `bpxl verify` then checks those values against NumPy.
Changing a Setup input before the recalculation proves Gnumeric computed them itself.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from _seed import seed
from _spoil import set_value

from backprop_xlsx.mlp import layout
from backprop_xlsx.mlp.workbook import build_workbook
from backprop_xlsx.verify.workbook import verify_workbook
from backprop_xlsx.xlsx.read import Package, cell_number

ETAS = (0.5, 2.0)
STEPS = 40


def _gnumeric_recalc(ssconvert: str, src: Path, dst: Path) -> Path:
    proc = subprocess.run(
        [ssconvert, "--recalc", str(src), str(dst)], capture_output=True, timeout=120, check=False
    )
    assert proc.returncode == 0 and dst.is_file(), proc.stderr.decode("utf-8", "replace")
    return dst


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gnumeric") / "built.xlsx"
    build_workbook(seed(), ETAS, STEPS, out)
    return out


def test_gnumeric_recalculation_passes_verify(built: Path, ssconvert: str) -> None:
    recalculated = _gnumeric_recalc(ssconvert, built, built.with_name("gnumeric.xlsx"))
    report = verify_workbook(recalculated, engine="cached")
    assert report.ok, report.text()
    assert report.cells_checked == len(ETAS) * (STEPS + 1) * len(layout.SEED_LAYOUT.columns) + (
        report.summary_cells
    )
    # Gnumeric computes in doubles too; measured here ≤ 5e-14 relative against NumPy.
    assert max(s.max_rel for s in report.sheets) < 1e-12


def test_gnumeric_follows_a_changed_setup_input(built: Path, ssconvert: str) -> None:
    # t1 = 0.9 instead of 0.5: every later value changes, so only a real recalculation passes.
    t1_cell = f"{layout.SETUP_VALUE_COLUMN}{layout.SEED_LAYOUT.setup_row['t1']}"
    changed = set_value(built, built.with_name("t1.xlsx"), layout.SETUP_SHEET, t1_cell, 0.9)
    recalculated = _gnumeric_recalc(ssconvert, changed, built.with_name("t1-gnumeric.xlsx"))
    report = verify_workbook(recalculated, engine="cached")
    assert report.ok, report.text()
    pkg = Package(recalculated)
    try:
        cells = pkg.cells("LR 0.5")
    finally:
        pkg.close()
    t1 = cell_number(
        cells[
            (
                layout.FIRST_ROW + STEPS,
                layout.SEED_LAYOUT.columns.index(layout.SEED_LAYOUT.column["t1"]) + 1,
            )
        ]
    )
    assert t1 == 0.9
