"""Mini-batches: the schedule, the workbook, and `bpxl verify` on it.

* `--batch-size S` (the whole training set) is today's full-batch workbook, byte for byte;
* the schedule cuts each epoch's shuffle as PyTorch's DataLoader(drop_last=True) does;
* the moons preset is `two_moons()`'s points;
* verify names by cell a spoiled batch column (an input from the wrong batch position, an
  epoch or a sample number off by one, a schedule cell typed over), and passes LibreOffice's
  and Gnumeric's recalculations, which equal NumPy's values.

The NumPy trajectory against torch.optim.SGD on random networks is tests/test_batches_torch.py.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

import numpy as np
import openpyxl
import pytest
from _sheets import sheet_values
from _spoil import edit_column, set_value
from click.testing import CliRunner
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from test_properties import Case, cases, formula_report

from backprop_xlsx.cli import cli
from backprop_xlsx.errors import BpxlError
from backprop_xlsx.mlp import batches, datasets, description, layout
from backprop_xlsx.mlp.config import check_batching
from backprop_xlsx.mlp.workbook import build_workbook
from backprop_xlsx.verify.workbook import verify_workbook
from backprop_xlsx.xlsx.read import Package, cell_number

STEPS = 12
ETA = 0.5
TITLE = layout.lr_sheet_title(ETA)


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def xor_batches(size: int = 2, seed: int = 0, steps: int = STEPS) -> description.Network:
    return check_batching(description.preset("xor"), size, seed, steps)


@pytest.fixture(scope="module")
def xor(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("batches") / "xor-b2.xlsx"
    build_workbook(xor_batches(), [ETA], STEPS, out)
    return out


# --- the schedule ------------------------------------------------------------------------------


def test_the_whole_training_set_is_the_full_batch_workbook_byte_for_byte(tmp_path: Path) -> None:
    plain, whole = tmp_path / "plain.xlsx", tmp_path / "whole.xlsx"
    common = ("build", "--preset", "xor", "--steps", "20")
    assert run_cli(*common, "--out", str(plain))[0] == 0
    assert run_cli(*common, "--batch-size", "4", "--shuffle-seed", "3", "--out", str(whole))[0] == 0
    assert plain.read_bytes() == whole.read_bytes()
    # and a real mini-batch build is another workbook
    two = tmp_path / "two.xlsx"
    assert run_cli(*common, "--batch-size", "2", "--out", str(two))[0] == 0
    assert two.read_bytes() != plain.read_bytes()


def test_each_epoch_is_a_permutation_from_the_seed() -> None:
    table = batches.shuffles(40, 6, seed=5)
    assert table.shape == (6, 40)
    for row in table:
        assert sorted(row) == list(range(1, 41))
    again = np.stack([np.random.default_rng(5).permutation(40) + 1 for _ in range(1)])
    np.testing.assert_array_equal(table[:1], again)  # the first epoch: the first permutation
    assert not (table[0] == table[1]).all()
    np.testing.assert_array_equal(table, batches.shuffles(40, 6, seed=5))


@pytest.mark.torch
@pytest.mark.parametrize(("samples", "size"), [(40, 8), (10, 3), (4, 3), (7, 1)])
def test_batches_are_dataloaders_with_drop_last(samples: int, size: int) -> None:
    import torch
    from torch.utils.data import DataLoader

    steps = 25
    epochs = batches.epochs_for(steps, samples, size)
    table = batches.shuffles(samples, epochs, seed=1)
    expected = []
    for permutation in table:  # the same shuffle, fed as the sampler's order
        loader = DataLoader(
            torch.arange(1, samples + 1), batch_size=size, sampler=list(permutation - 1),
            drop_last=True,
        )  # fmt: skip
        expected.extend(batch.tolist() for batch in loader)
    found = batches.step_batches(table, size, steps)
    assert found.tolist() == expected[: steps + 1]
    epoch = batches.step_epochs(samples, size, steps)
    per_epoch = samples // size
    assert epoch.tolist() == [k // per_epoch + 1 for k in range(steps + 1)]


def test_the_moons_preset_is_two_moons() -> None:
    moons = description.preset("moons")  # templates/moons.toml
    inputs, targets = datasets.two_moons()
    np.testing.assert_array_equal(moons.inputs, inputs)
    np.testing.assert_array_equal(moons.targets, targets)
    assert inputs.shape == (40, 2) and set(targets.ravel()) == {0.0, 1.0}
    assert np.abs(inputs).max() <= 1.2


def test_the_moons_preset_builds_with_mini_batches(tmp_path: Path) -> None:
    out = tmp_path / "moons.xlsx"
    code, text = run_cli("build", "--preset", "moons", "--batch-size", "8", "--steps", "10",
                         "--lr", "0.5", "--out", str(out))  # fmt: skip
    assert code == 0, text
    sheet = layout.SheetLayout(check_batching(description.preset("moons"), 8, 0, 10))
    pkg = Package(out)
    try:
        setup = pkg.cells(layout.SETUP_SHEET)
        lr = pkg.cells("LR 0.5")
    finally:
        pkg.close()
    first = layout.SETUP_SCHEDULE_FIRST_COLUMN
    table = sheet.schedule()
    stored = [
        [cell_number(setup[(layout.SETUP_FIRST_ROW + e, first + p)]) for p in range(40)]
        for e in range(table.shape[0])
    ]
    assert stored == table.tolist()
    # row 6 (iteration 5) is the first batch of epoch 2: 40 / 8 = 5 batches an epoch
    row = layout.FIRST_ROW + 5
    col = sheet.keys.index("epoch") + 1
    assert cell_number(lr[(row, col)]) == 2
    numbers = [cell_number(lr[(row, sheet.keys.index(f"n_b{m + 1}") + 1)]) for m in range(8)]
    assert numbers == table[1, :8].tolist()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--batch-size", "0"), "--batch-size must be between 1 and the 4 training samples"),
        (("--batch-size", "5"), "--batch-size must be between 1 and the 4 training samples"),
        (("--batch-size", "-2"), "--batch-size must be between 1 and the 4 training samples"),
        (("--batch-size", "2", "--shuffle-seed", "-1"), "--shuffle-seed must be between 0"),
        (("--batch-size", "2", "--gradient-check"), "--gradient-check compares the whole"),
    ],
)
def test_a_bad_batch_size_is_one_error_line(tmp_path: Path, args: tuple[str, ...], message: str):
    out = tmp_path / "x.xlsx"
    result = CliRunner().invoke(
        cli, ["build", "--preset", "xor", "--steps", "3", *args, "--out", str(out)]
    )
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


# --- verify -----------------------------------------------------------------------------------


def spoil_column(src: Path, key: str, old: str, new: str) -> Path:
    """Every formula of LR column `key` with `old` replaced by `new`."""
    letter = layout.SheetLayout(xor_batches()).letter[key]
    dst = src.with_name(f"spoiled-{key}.xlsx")
    edit_column(src, dst, TITLE, letter, lambda f, row: f.replace(old, new))
    return dst


def named(report, key: str) -> list[str]:  # type: ignore[no-untyped-def]
    letter = layout.SheetLayout(xor_batches()).letter[key]
    return [f.problem for f in report.findings if re.fullmatch(rf"{letter}\d+", f.cell)]


def test_a_mini_batch_workbook_verifies(xor: Path, soffice: str) -> None:
    report = verify_workbook(xor)
    assert report.ok, report.text()
    assert report.engine == "libreoffice"
    sheet = layout.SheetLayout(xor_batches())
    assert report.formulas_checked == 2 * len(sheet.columns)


def test_an_input_of_the_wrong_batch_position_is_named(xor: Path, soffice: str) -> None:
    # i1⁽¹⁾ picked by n⁽²⁾ (column D) instead of n⁽¹⁾ (column C)
    sheet = layout.SheetLayout(xor_batches())
    n1, n2 = sheet.letter["n_b1"], sheet.letter["n_b2"]
    spoiled = spoil_column(xor, "i1_b1", f"({n1}", f"({n2}")
    report = verify_workbook(spoiled)
    assert not report.ok
    problems = named(report, "i1_b1")
    assert any("formula gives a wrong i1_b1 on changed inputs" in p for p in problems), (
        report.text()
    )


def test_an_epoch_off_by_one_is_named(xor: Path, soffice: str) -> None:
    spoiled = spoil_column(xor, "epoch", ")+1", ")")
    report = verify_workbook(spoiled)
    assert not report.ok
    assert any("wrong epoch on changed inputs" in p for p in named(report, "epoch")), report.text()


def test_a_batch_number_off_by_one_is_named(xor: Path, soffice: str) -> None:
    spoiled = spoil_column(xor, "n_b1", "*2+1)", "*2+2)")
    report = verify_workbook(spoiled)
    assert not report.ok
    assert any("wrong n_b1 on changed inputs" in p for p in named(report, "n_b1")), report.text()


def test_an_index_range_off_the_training_set_is_named(xor: Path, soffice: str) -> None:
    # the training set's range shifted one row down: every input reads its neighbour's entry
    sheet = layout.SheetLayout(xor_batches())
    last = layout.SETUP_FIRST_ROW + 4 * sheet.stride - 1
    spoiled = spoil_column(xor, "t1_b2", f"$B${layout.SETUP_FIRST_ROW}:$B${last}",
                           f"$B${layout.SETUP_FIRST_ROW + 1}:$B${last + 1}")  # fmt: skip
    report = verify_workbook(spoiled)
    assert not report.ok
    assert any("wrong t1_b2 on changed inputs" in p for p in named(report, "t1_b2")), report.text()


def test_a_typed_over_schedule_cell_is_named(xor: Path, soffice: str) -> None:
    sheet = layout.SheetLayout(xor_batches())
    table = sheet.schedule()
    cell = f"N{layout.SETUP_FIRST_ROW + 1}"  # epoch 2, position 2
    other = int(table[1, 0])  # the sample at position 1: a number that is in the table
    spoiled = set_value(
        xor, xor.with_name("spoiled-schedule.xlsx"), layout.SETUP_SHEET, cell, other
    )
    report = verify_workbook(spoiled)
    assert not report.ok
    (finding,) = [f for f in report.findings if f.sheet == layout.SETUP_SHEET]
    assert finding.cell == cell and "seeded shuffle" in finding.problem
    assert finding.expected == table[1, 1] and finding.found == other


def test_a_full_pass_reading_another_samples_input_is_named(xor: Path, soffice: str) -> None:
    sheet = layout.SheetLayout(xor_batches())
    own, other = sheet.setup_row["i1_s2"], sheet.setup_row["i1_s3"]
    spoiled = spoil_column(xor, "full_a_h1_s2", f"$B${own}", f"$B${other}")
    report = verify_workbook(spoiled)
    assert not report.ok
    assert any("on changed inputs" in p for p in named(report, "full_a_h1_s2")), report.text()


# --- real engines ------------------------------------------------------------------------------


def moons_book(folder: Path, steps: int = 30) -> tuple[Path, layout.SheetLayout, list[float]]:
    network = check_batching(description.preset("moons"), 8, 2, steps)
    etas = [0.2, 0.5]
    out = folder / "moons-b8.xlsx"
    build_workbook(network, etas, steps, out)
    return out, layout.SheetLayout(network), etas


def relative_error(found: np.ndarray, expected: np.ndarray) -> float:
    assert not np.isnan(found).any(), "cells without a number"
    return float(np.max(np.abs(found - expected) / np.maximum(np.abs(expected), 1e-3)))


def expected_values(sheet: layout.SheetLayout, etas: list[float], steps: int) -> np.ndarray:
    setup = {e.key: e.value for e in sheet.setup}
    values = sheet.run(setup, np.array(etas), steps)
    return np.stack([values[k] for k in sheet.keys], axis=-1)  # (steps + 1, η, columns)


@pytest.mark.slow
def test_libreoffice_recalculates_mini_batches_as_numpy(tmp_path: Path, soffice: str) -> None:
    from backprop_xlsx.xlsx.libreoffice import recalculate

    steps = 30
    book, sheet, etas = moons_book(tmp_path, steps)
    recalculated = recalculate(book, tmp_path / "moons-lo.xlsx")
    want = expected_values(sheet, etas, steps)
    for j, eta in enumerate(etas):
        found = sheet_values(recalculated, sheet, eta, steps)
        assert relative_error(found, want[:, j]) <= 1e-12
    report = verify_workbook(recalculated, engine="cached")
    assert report.ok, report.text()


@pytest.mark.slow
def test_gnumeric_recalculates_mini_batches_as_numpy(tmp_path: Path, ssconvert: str) -> None:
    steps = 30
    book, sheet, etas = moons_book(tmp_path, steps)
    out = tmp_path / "moons-gnumeric.xlsx"
    proc = subprocess.run(
        [ssconvert, "--recalc", str(book), str(out)], capture_output=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")
    want = expected_values(sheet, etas, steps)
    for j, eta in enumerate(etas):
        found = sheet_values(out, sheet, eta, steps)
        assert relative_error(found, want[:, j]) <= 1e-10  # as test_presets allows Gnumeric
    report = verify_workbook(out, engine="cached")
    assert report.ok, report.text()


# --- random networks ---------------------------------------------------------------------------


@pytest.mark.slow  # ~0.5 s an example: build and the formula check on changed inputs
@settings(max_examples=25)
@given(
    case=cases(max_columns=120),
    size=st.integers(1, 49),
    seed=st.integers(0, 2**32 - 1),
    steps=st.integers(3, 12),
)
def test_built_mini_batch_formulas_pass_verify(
    case: Case, size: int, seed: int, steps: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    case = dataclasses.replace(case, samples=max(case.samples, 2))
    size = 1 + size % (case.samples - 1)
    network = check_batching(case.network(), size, seed, steps)
    out = tmp_path_factory.mktemp("batch-property") / "net.xlsx"
    try:
        build_workbook(network, [0.1], steps, out)
    except BpxlError as exc:
        assert "overflows at iteration" in str(exc), str(exc)
        assume(False)
    report = formula_report(out)
    assert report.ok, f"{case} B={size} seed={seed} steps={steps}\n{report.text()}"


def _with_setup_text(src: Path, dst: Path, cell: str, text: str) -> Path:
    wb = openpyxl.load_workbook(src)
    wb[layout.SETUP_SHEET][cell] = text
    wb.save(dst)
    return dst


def test_a_schedule_shorter_than_the_sheet_is_a_finding(
    xor: Path, soffice: str, tmp_path: Path
) -> None:
    # Setup claims one epoch: the sheet's INDEX ranges no longer match it, nothing crashes
    epochs_row = layout.SETUP_FIRST_ROW + len(layout.NETWORK_FIELDS) + 2
    short = _with_setup_text(xor, tmp_path / "short.xlsx", f"J{epochs_row}", "1")
    report = verify_workbook(short)
    assert not report.ok
    n1 = layout.SheetLayout(xor_batches()).letter["n_b1"]
    assert any(
        f.cell == f"{n1}{layout.FIRST_ROW}" and "batch schedule" in f.problem
        for f in report.findings
    ), report.text()


def test_an_unreadable_batch_size_cannot_be_checked(xor: Path, tmp_path: Path) -> None:
    size_row = layout.SETUP_FIRST_ROW + len(layout.NETWORK_FIELDS)
    bad = _with_setup_text(xor, tmp_path / "bad.xlsx", f"J{size_row}", "abc")
    with pytest.raises(BpxlError, match="batch size must be a whole number"):
        verify_workbook(bad, engine="cached")
