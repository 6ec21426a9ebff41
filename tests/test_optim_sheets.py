"""Optimizer sheets: titles, Setup's hyperparameter cells, the Optimizers sheet, the CLI, and
`bpxl verify` on them: no false alarm on a correct workbook (LibreOffice's and Gnumeric's
recalculations of every optimizer, also after β1 is changed on Setup), and each spoiled state or
update formula named by its cell."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import openpyxl
import pytest
from _cli import bpxl
from _sheets import formula_findings
from _spoil import edit_column, set_value

from backprop_xlsx.mlp import description, layout
from backprop_xlsx.mlp.optim import HYPERPARAMETERS, OPTIMIZERS, hyper_keys
from backprop_xlsx.mlp.workbook import build_workbook
from backprop_xlsx.report import Report
from backprop_xlsx.verify.optimizers import optimizer_layouts
from backprop_xlsx.verify.workbook import verify_workbook
from backprop_xlsx.xlsx.formula import cell_key
from backprop_xlsx.xlsx.look import INPUT_FILL
from backprop_xlsx.xlsx.read import Package, cell_number

ALL = list(OPTIMIZERS)
ETA = 0.05
STEPS = 12


def _network() -> description.Network:
    """2-3-2 tanh/sigmoid with trained biases and three samples: every kind of column."""
    rng = np.random.default_rng(3)
    return description.from_mapping(
        {
            "layers": [2, 3, 2],
            "activations": ["tanh", "sigmoid"],
            "loss": "mse",
            "bias": True,
            "inputs": rng.uniform(-1, 1, (3, 2)).tolist(),
            "targets": rng.uniform(0.1, 0.9, (3, 2)).tolist(),
            "seed": 3,
        }
    )


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("optim") / "optim.xlsx"
    build_workbook(_network(), [ETA, 0.2], STEPS, path, optimizers=ALL)
    return path


def test_titles_name_optimizer_and_eta() -> None:
    assert layout.sheet_title("sgd", 0.1) == "LR 0.1"
    assert layout.sheet_title("adam", 0.05) == "Adam 0.05"
    assert layout.sheet_title("momentum", 0.1) == "Momentum 0.1"
    for name in ALL:
        for eta in (0.05, 2.0, 0.1234567, 1e-5):
            title = layout.sheet_title(name, eta)
            assert layout.training_sheet(title) == (name, eta)
            assert layout.training_sheet(title.upper()) == (name, eta)
            assert layout.is_bpxl_sheet(title)
    for other in ("Adam", "Adam x", "Adamax 0.1", "Notes", "LR"):
        assert layout.training_sheet(other) is None and not layout.is_bpxl_sheet(other)
    assert layout.is_bpxl_sheet(layout.OPTIMIZER_SHEET)


def test_workbook_sheets_setup_and_state_columns(book: Path) -> None:
    wb = openpyxl.load_workbook(book)
    titles = [layout.sheet_title(o, e) for o in ALL for e in (ETA, 0.2)]
    assert wb.sheetnames == [layout.SETUP_SHEET, *titles, layout.OPTIMIZER_SHEET]
    setup = wb[layout.SETUP_SHEET]
    sheet = optimizer_layouts(layout.SheetLayout(_network()), titles)[-1]  # AdamW's
    for key in hyper_keys(ALL):
        cell = setup[f"{layout.SETUP_VALUE_COLUMN}{sheet.setup_row[key]}"]
        assert cell.value == HYPERPARAMETERS[key].default
        assert cell.fill.start_color.rgb == INPUT_FILL.start_color.rgb  # yellow: an input
        name = setup[f"A{sheet.setup_row[key]}"].value
        assert name == HYPERPARAMETERS[key].symbol
    # Setup links every sheet, and says which optimizer it runs
    for j, title in enumerate(titles):
        assert setup[f"F{layout.setup_lr_row(j)}"].value == title
        assert setup[f"H{layout.setup_lr_row(j)}"].value in ("SGD", "RMSprop", "Adam", "AdamW")
    adam = wb["Adam 0.05"]
    headers = [c.value for c in adam[layout.HEADER_ROW]]
    for p in ("w1", "b1", "w12", "b5"):
        assert {f"m_{p}", f"v_{p}", f"m̂_{p}", f"v̂_{p}"} <= set(headers), p
    col = {h: c.column_letter for h, c in zip(headers, adam[layout.HEADER_ROW], strict=True)}
    row = layout.FIRST_ROW + 1
    beta1 = f"Setup!$B${sheet.setup_row['beta1']}"
    assert adam[f"{col['m̂_w1']}{row}"].value == f"={col['m_w1']}{row}/(1-{col['β1ᵗ']}{row})"
    assert adam[f"{col['β1ᵗ']}{row}"].value == f"={col['β1ᵗ']}{row - 1}*{beta1}"
    assert adam[f"{col['β1ᵗ']}{layout.FIRST_ROW}"].value == "=1"
    assert adam[f"{col['m_w1']}{layout.FIRST_ROW}"].value == "=0"


def test_sgd_alone_is_todays_workbook(tmp_path: Path) -> None:
    net = _network()
    build_workbook(net, [ETA], STEPS, tmp_path / "a.xlsx")
    build_workbook(net, [ETA], STEPS, tmp_path / "b.xlsx", optimizers=["sgd"])
    assert (tmp_path / "a.xlsx").read_bytes() == (tmp_path / "b.xlsx").read_bytes()
    names = openpyxl.load_workbook(tmp_path / "a.xlsx", read_only=True).sheetnames
    assert names == [layout.SETUP_SHEET, "LR 0.05", layout.SUMMARY_SHEET]


def _formula_findings(path: Path, title: str) -> Report:
    """verify's formula check of one training sheet, its layout read from every sheet's title."""
    pkg = Package(path)
    try:
        titles = [t for t in pkg.parts if layout.training_sheet(t)]
    finally:
        pkg.close()
    layouts = optimizer_layouts(layout.SheetLayout(_network()), titles)
    return formula_findings(path, title, dict(zip(titles, layouts, strict=True))[title])


def test_every_optimizer_sheet_passes_the_formula_check(book: Path) -> None:
    for name in ALL:
        report = _formula_findings(book, layout.sheet_title(name, ETA))
        assert report.ok, report.text()


def _spoils() -> dict[str, tuple[str, str, Callable[[layout.SheetLayout], Callable]]]:
    """spoil → (optimizer, column key, edit given the sheet's layout)."""

    def setup(sheet: layout.SheetLayout, key: str) -> str:
        return f"Setup!$B${sheet.setup_row[key]}"

    return {
        # m̂ = m, without its bias correction 1/(1 − β1ᵗ)
        "m̂ without bias correction": (
            "adam", "m_hat_w2", lambda s: lambda f, row: f"{s.letter['m_w2']}{row}",
        ),
        # v ← β1·v + (1 − β1)·g²: β1 where β2 belongs
        "β1 for β2": (
            "adamw", "v_b3",
            lambda s: lambda f, row: f.replace(setup(s, "beta2"), setup(s, "beta1")),
        ),
        # v̂ corrected by β1ᵗ instead of β2ᵗ
        "β1ᵗ in v̂": (
            "adam", "v_hat_w7",
            lambda s: lambda f, row: f.replace(f"{s.letter['beta2_t']}{row}",
                                               f"{s.letter['beta1_t']}{row}"),
        ),
        # β2ᵗ = β2ᵗ⁻¹·β1
        "β1 in β2ᵗ": (
            "adamw", "beta2_t",
            lambda s: lambda f, row: f.replace(setup(s, "beta2"), setup(s, "beta1")),
        ),
        # w ← w − η·v with the velocity of the row above: v reads the wrong row
        "velocity one row off": (
            "momentum", "w4",
            lambda s: lambda f, row: f.replace(f"{s.letter['v_w4']}{row}",
                                               f"{s.letter['v_w4']}{row - 1}"),
        ),
        # v ← μ·v + g with the velocity of another weight (w8's for w9)
        "another weight's velocity": (
            "nesterov", "v_w9",
            lambda s: lambda f, row: f.replace(f"{s.letter['v_w9']}{row - 1}",
                                               f"{s.letter['v_w8']}{row - 1}"),
        ),
        # RMSprop's ε inside the square root
        "ε inside √": (
            "rmsprop", "b4",
            lambda s: lambda f, row: re.sub(r"SQRT\(([A-Z]+\d+)\)\+(Setup!\$B\$\d+)",
                                            r"SQRT(\1+\2)", f),
        ),
    }  # fmt: skip


@pytest.mark.parametrize("spoil", list(_spoils()))
def test_a_spoiled_optimizer_formula_is_named(book: Path, spoil: str, tmp_path: Path) -> None:
    optimizer, key, edit = _spoils()[spoil]
    title = layout.sheet_title(optimizer, ETA)
    titles = [layout.sheet_title(o, e) for o in ALL for e in (ETA, 0.2)]
    sheet = optimizer_layouts(layout.SheetLayout(_network()), titles)[titles.index(title)]
    letter = sheet.letter[key]
    spoiled = tmp_path / "spoiled.xlsx"
    cell = edit_column(book, spoiled, title, letter, edit(sheet), lambda r: r != layout.FIRST_ROW)
    report = _formula_findings(spoiled, title)
    assert not report.ok
    named = [f for f in report.findings if f.cell == cell]
    assert named and all("changed inputs" in f.problem for f in named), report.text()
    assert all(re.fullmatch(rf"{letter}\d+", f.cell) for f in report.findings), report.text()


def test_cli_optimizers_and_bad_hyperparameters(tmp_path: Path) -> None:
    out = tmp_path / "o.xlsx"
    done = bpxl("build", "--optimizer", "adam", "nesterov", "--lr", "0.05", "--steps", "5",
                "--betas", "0.8", "0.99", "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "2 training sheets" in done.stdout
    wb = openpyxl.load_workbook(out, read_only=True)
    assert wb.sheetnames == ["Setup", "Adam 0.05", "Nesterov 0.05", "Optimizers"]
    for args, words in (
        (["--optimizer", "sgd", "--momentum", "0.5"], "--momentum is for momentum"),
        (["--optimizer", "adam", "--betas", "0.9", "1"], "β2 must be in [0, 1)"),
        (["--optimizer", "rmsprop", "--alpha", "-0.1"], "α must be in [0, 1)"),
        (["--optimizer", "adam", "adam"], "given twice"),
        (["--optimizer", "adamax"], "adamax"),
    ):
        bad = bpxl("build", *args, "--out", str(tmp_path / "bad.xlsx"))
        assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr
        assert bad.stderr.startswith("error:") and words in bad.stderr, bad.stderr
        assert not (tmp_path / "bad.xlsx").exists()


def _final_e_total(path: Path, title: str) -> float:
    sheet = optimizer_layouts(layout.SheetLayout(_network()), [title])[0]
    pkg = Package(path)
    try:
        where = f"{sheet.letter['E_total']}{layout.last_row(STEPS)}"
        value = cell_number(pkg.cells(title).get(cell_key(where)))
    finally:
        pkg.close()
    assert value is not None
    return value


def test_libreoffice_recalculation_of_every_optimizer_passes_verify(
    book: Path, soffice: str
) -> None:
    report = verify_workbook(book, engine="libreoffice")
    assert report.ok, report.text()
    assert len(report.sheets) == 2 * len(ALL)
    assert max(s.max_rel for s in report.sheets) < 1e-11


def test_a_changed_beta1_recomputes_every_adam_sheet(
    book: Path, soffice: str, tmp_path: Path
) -> None:
    from backprop_xlsx.xlsx.libreoffice import recalculate

    titles = [layout.sheet_title(o, e) for o in ALL for e in (ETA, 0.2)]
    sheet = optimizer_layouts(layout.SheetLayout(_network()), titles)[-1]
    cell = f"{layout.SETUP_VALUE_COLUMN}{sheet.setup_row['beta1']}"
    changed = set_value(book, tmp_path / "beta1.xlsx", layout.SETUP_SHEET, cell, 0.5)
    recalculate(changed, tmp_path / "beta1-lo.xlsx")
    before = _recalculated(book, tmp_path / "lo.xlsx")
    after = tmp_path / "beta1-lo.xlsx"
    report = verify_workbook(after, engine="cached")  # NumPy from Setup's β1 = 0.5
    assert report.ok, report.text()
    for title in titles:
        moved = _final_e_total(before, title) != _final_e_total(after, title)
        assert moved == title.startswith("Adam"), title  # Adam and AdamW, nothing else


def _recalculated(src: Path, dst: Path) -> Path:
    from backprop_xlsx.xlsx.libreoffice import recalculate

    recalculate(src, dst)
    return dst


def test_gnumeric_recalculation_of_every_optimizer_passes_verify(
    book: Path, ssconvert: str, tmp_path: Path
) -> None:
    dst = tmp_path / "gnumeric.xlsx"
    proc = subprocess.run(
        [ssconvert, "--recalc", str(book), str(dst)], capture_output=True, timeout=300, check=False
    )
    assert proc.returncode == 0 and dst.is_file(), proc.stderr.decode("utf-8", "replace")
    report = verify_workbook(dst, engine="cached")
    assert report.ok, report.text()
    assert len(report.sheets) == 2 * len(ALL)


def test_rebuild_replaces_optimizer_sheets_and_keeps_the_users(tmp_path: Path) -> None:
    """The sheets of an earlier build with optimizers are bpxl's: a rebuild without them
    removes them (named), and a later one with them removes Error vs LR; a sheet of the user's
    whose name is not bpxl's is kept."""
    out = tmp_path / "book.xlsx"
    first = build_workbook(_network(), [ETA], 3, out, optimizers=["adam", "nesterov"])
    assert "2 training sheets" in first
    wb = openpyxl.load_workbook(out)
    wb.create_sheet("Adam notes")  # not a training sheet's title: the user's
    wb.save(out)
    again = build_workbook(_network(), [ETA], 3, out)
    assert "removed Adam 0.05, Nesterov 0.05, Optimizers" in again, again
    assert "kept Adam notes" in again, again
    names = openpyxl.load_workbook(out, read_only=True).sheetnames
    assert names == [layout.SETUP_SHEET, "LR 0.05", layout.SUMMARY_SHEET, "Adam notes"]


def test_rmsprop_at_its_minimum_is_compared_until_rounding_decides(
    tmp_path: Path, soffice: str
) -> None:
    """The seed's RMSprop at η 0.1 reaches E ≈ 1e-32 by iteration 100; from about 160 on,
    LibreOffice's exact 0 for a − t stops it while NumPy's g/√v of rounding noise oscillates.
    verify compares every cell before the iteration where one rounding grows past the
    tolerance, says so, and passes; the Adam sheet beside it is compared whole."""
    out = tmp_path / "rmsprop.xlsx"
    build_workbook(
        description.preset("seed"), [0.1], 300, out, optimizers=["rmsprop", "adam"], recalc=True
    )
    report = verify_workbook(out, engine="cached")
    assert report.ok, report.text()
    rmsprop, adam = report.sheets
    assert rmsprop.compared_until is not None and 100 < rmsprop.compared_until < 300
    assert adam.compared_until is None
    assert "not compared with NumPy" in report.text()
    assert rmsprop.cells == rmsprop.compared_until * 40  # every column of the rows before
