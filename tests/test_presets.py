"""Every preset, built by `bpxl build` and recalculated by two real spreadsheet engines.

LibreOffice and Gnumeric each compute the workbook from its formulas alone; every cell of every
LR sheet must then equal NumPy's value (network.py, itself held to torch.autograd). The values
bpxl caches in the file for viewers that do not calculate must be NumPy's exactly, and two
builds of the same inputs must be the same bytes.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import openpyxl
import pytest
from _sheets import sheet_values
from click.testing import CliRunner

from backprop_xlsx.cli import cli
from backprop_xlsx.mlp import description, layout
from backprop_xlsx.xlsx.libreoffice import recalculate

STEPS = 30  # per preset; its own learning rates
PRESETS = description.PRESETS


def build(tmp: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["build", *args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def books(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("presets")
    out = {}
    for name in PRESETS:
        out[name] = folder / f"{name}.xlsx"
        code, text = build(folder, "--preset", name, "--steps", str(STEPS), "--out", str(out[name]))
        assert code == 0, text
    return out


def numpy_values(name: str) -> tuple[layout.SheetLayout, list[float], dict[str, np.ndarray]]:
    net = description.preset(name)
    sheet = layout.SheetLayout(net)
    etas = list(net.lr or (0.1, 0.2, 0.5, 0.8, 1.0, 2.0))
    setup = {e.key: e.value for e in sheet.setup}
    return sheet, etas, sheet.run(setup, np.array(etas), STEPS)


def all_sheet_values(path: Path, sheet: layout.SheetLayout, etas: list[float]) -> np.ndarray:
    """Every LR sheet's values as read from the file: (learning rates, iterations, columns)."""
    return np.stack([sheet_values(path, sheet, eta, STEPS) for eta in etas])


def expected_array(sheet: layout.SheetLayout, values: dict[str, np.ndarray]) -> np.ndarray:
    return np.stack([values[c.key] for c in sheet.columns], axis=-1).transpose(1, 0, 2)


def relative_error(found: np.ndarray, expected: np.ndarray) -> float:
    """Largest error relative to |expected| plus its column's largest |value| (and absolute
    below 1e-3), verify's model: a net input near 0 is a sum of terms of the column's size and
    carries their rounding (moons' 40-sample gradient sums drift the weights by ~1e-14 in 30
    steps: 8e-15 on a z of -0.0019, 4e-12 of it)."""
    assert not np.isnan(found).any(), "cells without a number"
    column = np.abs(expected).max(axis=(0, 1), keepdims=True)
    scale = np.maximum(np.abs(expected) + column, 1e-3)
    return float(np.max(np.abs(found - expected) / scale))


@pytest.mark.parametrize("name", PRESETS)
def test_bpxl_caches_numpys_values(books: dict[str, Path], name: str) -> None:
    sheet, etas, values = numpy_values(name)
    found = all_sheet_values(books[name], sheet, etas)
    np.testing.assert_array_equal(found, expected_array(sheet, values))


@pytest.mark.parametrize("name", PRESETS)
def test_libreoffice_recalculation_equals_numpy(
    books: dict[str, Path], name: str, soffice: str, tmp_path: Path
) -> None:
    sheet, etas, values = numpy_values(name)
    recalculated = recalculate(books[name], tmp_path / f"{name}-lo.xlsx")
    found = all_sheet_values(recalculated, sheet, etas)
    assert relative_error(found, expected_array(sheet, values)) <= 1e-12


@pytest.mark.parametrize("name", PRESETS)
def test_gnumeric_recalculation_equals_numpy(
    books: dict[str, Path], name: str, ssconvert: str, tmp_path: Path
) -> None:
    sheet, etas, values = numpy_values(name)
    out = tmp_path / f"{name}-gnumeric.xlsx"
    proc = subprocess.run(
        [ssconvert, "--recalc", str(books[name]), str(out)], capture_output=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")
    found = all_sheet_values(out, sheet, etas)
    # Gnumeric evaluates some functions in extended precision: a little looser than LibreOffice
    assert relative_error(found, expected_array(sheet, values)) <= 1e-10


def test_mazur_reads_the_published_error_in_the_workbook(books: dict[str, Path]) -> None:
    sheet, _, _ = numpy_values("mazur")
    ws = openpyxl.load_workbook(books["mazur"], data_only=True)["LR 0.5"]
    e_total = ws[f"{sheet.letter['E_total']}{layout.FIRST_ROW}"].value
    assert round(e_total, 9) == 0.298371109
    setup = openpyxl.load_workbook(books["mazur"], data_only=True)[layout.SETUP_SHEET]
    label, value = layout.SETUP_NETWORK_COLUMNS
    fields = {
        setup[f"{label}{row}"].value: setup[f"{value}{row}"].value
        for row in range(layout.SETUP_FIRST_ROW, layout.SETUP_FIRST_ROW + 7)
    }
    assert fields == {
        "preset": "mazur", "layers": "2, 2, 2", "activations": "sigmoid, sigmoid",
        "loss": "mse", "bias": "fixed", "samples": "1", "layout": "general",
    }  # fmt: skip


def test_builds_are_byte_identical(tmp_path: Path) -> None:
    first, second = tmp_path / "a.xlsx", tmp_path / "b.xlsx"
    assert build(tmp_path, "--preset", "xor", "--steps", "5", "--out", str(first))[0] == 0
    assert build(tmp_path, "--preset", "xor", "--steps", "5", "--out", str(second))[0] == 0
    assert first.read_bytes() == second.read_bytes()


def test_several_samples_get_an_outputs_chart(books: dict[str, Path]) -> None:
    wb = openpyxl.load_workbook(books["xor"])
    charts = wb["LR 0.5"]._charts
    assert len(charts) == 2  # E_total, and every sample's output
    assert len(charts[1].series) == 4
    assert len(openpyxl.load_workbook(books["mazur"])["LR 0.5"]._charts) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--preset", "nope"], "Invalid value for '--preset'"),
        (["--preset", "xor", "--config", "x.toml"], "give either --preset or --config"),
    ],
)
def test_bad_preset_use_is_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["build", *args, "--out", str(tmp_path / "o.xlsx")])
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "o.xlsx").exists()
