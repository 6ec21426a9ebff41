"""The Gradient check sheet: central differences by formulas against backprop, and its check.

Witnesses: a spreadsheet engine's own recalculation (LibreOffice and Gnumeric, at an iteration
typed into the sheet), torch.autograd-free finite differences in NumPy, and `bpxl verify`, which
must name a spoiled cell and pass every correct (and recalculated) workbook.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from _cli import bpxl
from _spoil import edit_sheet

from backprop_xlsx.errors import BpxlError
from backprop_xlsx.mlp import description, layout
from backprop_xlsx.mlp import gradcheck as G
from backprop_xlsx.mlp.description import Network
from backprop_xlsx.mlp.network import backprop
from backprop_xlsx.mlp.workbook import build_workbook
from backprop_xlsx.report import Report
from backprop_xlsx.verify.gradcheck import check_gradcheck, read_gradcheck_cells
from backprop_xlsx.verify.workbook import verify_workbook
from backprop_xlsx.xlsx.libreoffice import recalculate
from backprop_xlsx.xlsx.read import Package, cell_number

STEPS = 30
ETAS = (0.5, 1.0)


def _deep() -> Network:
    """2-16-16-1, tanh hidden layers, sigmoid output, trained biases, 4 samples: 337 parameters."""
    return description.from_mapping(
        {
            "layers": [2, 16, 16, 1],
            "activations": ["tanh", "tanh", "sigmoid"],
            "bias": True,
            "inputs": [[-0.83, -0.53], [0.6, 0.16], [-0.04, -0.68], [0.48, 0.91]],
            "targets": [[0], [1], [1], [0]],
            "seed": 3,
        }
    )


NETWORKS = {
    "seed": lambda: description.preset("seed"),
    "xor": lambda: description.preset("xor"),
    "softmax": lambda: description.preset("softmax"),
    "deep": _deep,
}


def _build(network: Network, path: Path) -> Path:
    build_workbook(network, ETAS, STEPS, path, gradient_check=True)
    return path


def _edit(src: Path, dst: Path, cells: dict[str, tuple[str, str]]) -> Path:
    """A copy of `src` whose Gradient check cells have `old` replaced by `new` in their XML
    (a formula's text, or a typed value): cell → (old, new)."""

    def edit(text: str) -> str:
        for a1, (old, new) in cells.items():
            match = re.search(rf'<c r="{a1}"[^>]*>.*?</c>', text)
            assert match is not None and old in match[0], (a1, old)
            text = text[: match.start()] + match[0].replace(old, new, 1) + text[match.end() :]
        return text

    return edit_sheet(src, dst, G.GRADCHECK_SHEET, edit)


def _formula_findings(path: Path, network: Network) -> list[str]:
    """The formula check alone (no engine needed): the cells it names."""
    pkg = Package(path)
    try:
        cells = read_gradcheck_cells(pkg, layout.SheetLayout(network))
        titles = dict(pkg.titles)
    finally:
        pkg.close()
    assert cells is not None
    report = Report(str(path))
    sheet = layout.SheetLayout(network)
    steps = {layout.lr_sheet_title(e): STEPS for e in ETAS}
    check_gradcheck(cells, sheet, steps, {}, None, titles, report)
    return [f.cell for f in report.findings]


def _rows(path: Path) -> tuple[dict[str, tuple[float, float, float]], float]:
    """The engine's (central difference, ∂E/∂θ, relative error) per parameter, and the floor."""
    pkg = Package(path)
    try:
        cells = pkg.cells(G.GRADCHECK_SHEET)
    finally:
        pkg.close()
    assert cells is not None
    out, row = {}, G.FIRST_ROW
    while (row, 1) in cells:
        values = [cell_number(cells.get((row, c))) for c in (3, 4, 5)]
        assert all(v is not None for v in values), (row, values)
        out[cells[row, 1].value] = tuple(values)
        row += 1
    return out, cell_number(cells.get((8, 2)))


# --- without an engine -----------------------------------------------------------------------


@pytest.mark.slow
def test_one_row_per_trained_parameter_named_as_on_the_lr_sheets(tmp_path: Path) -> None:
    for name, make in NETWORKS.items():
        network = make()
        path = _build(network, tmp_path / f"{name}.xlsx")
        rows, _ = _rows(path)
        sheet = layout.SheetLayout(network)
        trained = [k[4:] for k in sheet.keys if k.startswith("dE_d")]
        assert list(rows) == trained, name
    mazur = _build(description.preset("mazur"), tmp_path / "mazur.xlsx")
    assert list(_rows(mazur)[0]) == [f"w{k}" for k in range(1, 9)]  # fixed biases: no rows


def test_the_default_build_has_no_gradient_check(tmp_path: Path) -> None:
    path = tmp_path / "plain.xlsx"
    build_workbook(description.preset("xor"), ETAS, STEPS, path)
    assert G.GRADCHECK_SHEET not in Package(path).parts


@pytest.mark.parametrize(  # the 2-16-16-1 net takes seconds: slow
    "name", [pytest.param(n, marks=[pytest.mark.slow] * (n == "deep")) for n in NETWORKS]
)
def test_numpy_central_difference_agrees_with_backprop(name: str) -> None:
    """The sheet's rule, on NumPy's own numbers at every fifth iteration of both learning rates:
    the relative error with its floor stays ≤ 1e-7, and a gradient off by 1e-6 is caught."""
    network = NETWORKS[name]()
    sheet = layout.SheetLayout(network)
    setup = {e.key: e.value for e in sheet.setup}
    values = sheet.run(setup, np.asarray(ETAS), STEPS)
    g = G.GradCheckLayout(sheet, "LR 0.5", STEPS)
    for j in range(len(ETAS)):
        for k in range(0, STEPS + 1, 5):
            row = {key: values[key][k, j] for key in sheet.keys}
            theta, gradient, e_total = g.at_iteration(row)
            want = g.values(setup, theta, gradient, e_total, 1e-5, 1e-7)
            rel = [want[f"E{g.row[p]}"] for p in g.params]
            assert max(rel) <= 1e-7, (name, j, k, max(rel))
            wrong = dict(gradient)
            big = max(g.params, key=lambda p: abs(gradient[p]))
            wrong[big] *= 1 + 1e-6
            spoiled = g.values(setup, theta, wrong, e_total, 1e-5, 1e-7)
            assert spoiled[f"E{g.row[big]}"] > 1e-7


def test_numpy_central_difference_is_an_independent_finite_difference() -> None:
    """GradCheckLayout.values' E(θ ± h) equal E_total of network.backprop on a hand-nudged copy."""
    network = description.preset("xor")
    sheet = layout.SheetLayout(network)
    setup = {e.key: e.value for e in sheet.setup}
    g = G.GradCheckLayout(sheet, "LR 0.5", 1)
    values = sheet.run(setup, np.asarray([0.5]), 1)
    row = {key: values[key][1, 0] for key in sheet.keys}
    want = g.values(setup, *g.at_iteration(row), 1e-5, 1e-7)
    for p in ("w2", "b3"):
        for side, sign in (("+", 1), ("-", -1)):
            nudged = dict(setup) | g.at_iteration(row)[0]
            nudged[p] += sign * 1e-5
            x, t, W, b = sheet.parameters(nudged)
            e = float(backprop(network.net, x, t, W, b).E_total)
            assert want[f"{g.letter[side, 'E_total']}{g.row[p]}"] == e


SPOILS = {  # what goes wrong → (cell, old text, new text) in the seed's sheet
    "wrong sign": ("F13", "($B$13+$B$3)", "($B$13-$B$3)"),
    "wrong h": ("C13", "(2*$B$3)", "(2*1E-05)"),
    "nudges the wrong weight": (
        "F13",
        "($B$13+$B$3)*Setup!$B$4+$B$14*Setup!$B$5",
        "$B$13*Setup!$B$4+($B$14+$B$3)*Setup!$B$5",
    ),
    "wrong iteration": ("B15", "$B$4+1)", "$B$4)"),
}


@pytest.mark.parametrize("what", list(SPOILS))
def test_a_spoiled_formula_is_named_by_its_cell(what: str, tmp_path: Path) -> None:
    network = description.preset("seed")
    good = _build(network, tmp_path / "good.xlsx")
    assert _formula_findings(good, network) == []
    cell, old, new = SPOILS[what]
    spoiled = _edit(good, tmp_path / "spoiled.xlsx", {cell: (old, new)})
    assert _formula_findings(spoiled, network) == [cell]


def test_a_formula_spelled_otherwise_but_equal_is_accepted(tmp_path: Path) -> None:
    network = description.preset("seed")
    good = _build(network, tmp_path / "good.xlsx")
    rewritten = {
        "C14": ("(N14-W14)/(2*$B$3)", "(-W14+N14)/2/$B$3"),
        "F13": ("($B$13+$B$3)*Setup!$B$4", "Setup!$B$4*($B$3+$B$13)"),
        "E15": ("ABS(C15-D15)", "ABS(D15-C15)"),
    }
    assert _formula_findings(_edit(good, tmp_path / "same.xlsx", rewritten), network) == []
    # but INDEX must read as bpxl reads it: the same cell by another route is not proven
    other = {"B13": ("$B$4+1)", "1+$B$4)")}
    assert _formula_findings(_edit(good, tmp_path / "index.xlsx", other), network) == ["B13"]


def test_a_spoiled_bulk_row_is_named_too(tmp_path: Path) -> None:
    """The rows after the first are streamed: spoil the softmax net's b7, its + pass's E_total."""
    network = description.preset("softmax")
    good = _build(network, tmp_path / "good.xlsx")
    g = G.GradCheckLayout(layout.SheetLayout(network), "LR 0.5", STEPS)
    cell = f"{g.letter['+', 'E_total']}{g.row['b7']}"
    spoiled = _edit(good, tmp_path / "spoiled.xlsx", {cell: ("-", "+")})
    assert _formula_findings(spoiled, network) == [cell]


def test_too_big_a_gradient_check_is_refused_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "wide.toml"
    config.write_text(
        "layers = [2, 64, 64, 1]\nbias = true\ninputs = [[0, 1]]\ntargets = [[1]]\nseed = 1\n"
    )
    network = description.load(config)
    with pytest.raises(BpxlError, match="gradient-check sheet of this network needs"):
        build_workbook(network, (0.1,), 1, tmp_path / "wide.xlsx", gradient_check=True)
    run = bpxl("build", "--config", str(config), "--steps", "1", "--gradient-check",
               "--out", str(tmp_path / "wide.xlsx"))  # fmt: skip
    assert run.returncode == 2
    assert run.stderr.startswith("error: the gradient-check sheet") and run.stderr.count("\n") == 1
    assert not (tmp_path / "wide.xlsx").exists()


def test_the_cli_flag_writes_the_sheet(tmp_path: Path) -> None:
    out = tmp_path / "xor.xlsx"
    run = bpxl("build", "--preset", "xor", "--steps", "5", "--gradient-check", "--out", str(out))
    assert run.returncode == 0, run.stderr
    assert "a gradient check of 910 formulas" in run.stdout  # 13 parameters × (4 + 2 × 33)
    assert G.GRADCHECK_SHEET in Package(out).parts
    again = bpxl("build", "--preset", "xor", "--steps", "5", "--out", str(out))
    assert f"removed {G.GRADCHECK_SHEET} (no --gradient-check this time)" in again.stdout


# --- real engines ----------------------------------------------------------------------------


def _gnumeric(ssconvert: str, src: Path, dst: Path) -> Path:
    proc = subprocess.run(
        [ssconvert, "--recalc", str(src), str(dst)], capture_output=True, timeout=300, check=False
    )
    assert proc.returncode == 0 and dst.is_file(), proc.stderr.decode("utf-8", "replace")
    return dst


def _assert_agrees(path: Path, what: str) -> None:
    rows, floor = _rows(path)
    assert floor > 0
    for p, (cd, bp, rel) in rows.items():
        assert rel <= 1e-7, (what, p, cd, bp, rel)
        # the engine's relative error is the rule itself, recomputed here from its two gradients
        assert abs(rel - abs(cd - bp) / max(abs(cd), abs(bp), floor)) <= 1e-13, (what, p)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(NETWORKS))
def test_engines_agree_to_1e_7_and_verify_passes(
    name: str, tmp_path: Path, soffice: str, ssconvert: str
) -> None:
    """LibreOffice and Gnumeric recalculate the sheet at iteration 0 and at the last iteration
    (typed into the yellow cell), each within 1e-7 relative; verify passes every copy."""
    built = _build(NETWORKS[name](), tmp_path / "built.xlsx")
    last = _edit(built, tmp_path / "last.xlsx", {G.ITERATION_CELL: ("<v>0</v>", f"<v>{STEPS}</v>")})
    for label, src in (("iteration 0", built), (f"iteration {STEPS}", last)):
        lo = recalculate(src, tmp_path / f"lo {label}.xlsx")
        gn = _gnumeric(ssconvert, src, tmp_path / f"gn {label}.xlsx")
        for engine, path in (("LibreOffice", lo), ("Gnumeric", gn)):
            _assert_agrees(path, f"{name}, {engine}, {label}")
            report = verify_workbook(path, engine="cached")
            assert report.ok, [f.text() for f in report.findings]
            assert report.gradcheck_cells > 0
    # the last iteration's gradients are not the first's: the sheet really read the iteration
    assert (
        _rows(tmp_path / f"lo iteration {STEPS}.xlsx")[0]
        != _rows(tmp_path / "lo iteration 0.xlsx")[0]
    )


@pytest.mark.slow
def test_verify_names_a_wrong_iteration_by_formula_and_value(tmp_path: Path, soffice: str) -> None:
    network = description.preset("xor")
    built = _build(network, tmp_path / "built.xlsx")
    report = verify_workbook(built)
    assert report.ok, [f.text() for f in report.findings]
    spoiled = _edit(built, tmp_path / "spoiled.xlsx", {"B15": ("$B$4+1)", "$B$4+2)")})
    report = verify_workbook(spoiled)
    texts = [f.text() for f in report.findings]
    formulas = [f.cell for f in report.findings if "formula" in f.problem]
    assert formulas == ["B15"], texts  # the one wrong formula
    # and its value, w3 of iteration 2 instead of 0 (every pass that reads w3 follows it)
    assert any(t.startswith("'Gradient check'!B15: wrong w3 at the iteration") for t in texts)
