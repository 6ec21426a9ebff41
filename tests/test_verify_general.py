"""`bpxl verify` on general networks: it reads the architecture from the workbook itself and
names the cell of a spoiled formula, also one that gives the right number on the sheet's own
inputs."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from _spoil import edit_column, edit_sheet
from click.testing import CliRunner

from backprop_xlsx.cli import cli
from backprop_xlsx.mlp import description, layout
from backprop_xlsx.mlp.workbook import build_workbook
from backprop_xlsx.verify.workbook import verify_workbook

STEPS = 12
ETA = 0.5
TITLE = layout.lr_sheet_title(ETA)


@pytest.fixture(scope="module")
def xor(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("general") / "xor.xlsx"
    build_workbook(description.preset("xor"), [ETA], STEPS, out)
    return out


def xor_layout() -> layout.SheetLayout:
    return layout.SheetLayout(description.preset("xor"))


def spoil_column(src: Path, key: str, edit: Callable[[str], str], first_row: int) -> Path:
    """A copy of `src` whose formulas of column `key` (from `first_row` down) pass through `edit`;
    cached values are left as they are (bpxl's own, which verify never takes as evidence)."""
    dst = src.with_name(f"spoiled-{key}-{first_row}.xlsx")
    letter = xor_layout().letter[key]
    edit_column(src, dst, TITLE, letter, lambda f, row: edit(f), lambda row: row >= first_row)
    return dst


def test_each_preset_verifies(tmp_path: Path, soffice: str) -> None:
    for name in ("mazur", "xor", "softmax"):
        out = tmp_path / f"{name}.xlsx"
        build_workbook(description.preset(name), [0.3, 1.0], 8, out)
        report = verify_workbook(out)
        assert report.ok, report.text()
        assert report.engine == "libreoffice"  # bpxl's own cached values are no evidence
        sheet = layout.SheetLayout(description.preset(name))
        assert report.formulas_checked == 2 * 2 * len(sheet.columns)


def test_a_delta_reading_another_samples_activation_is_named(xor: Path, soffice: str) -> None:
    sheet = xor_layout()
    own, other = sheet.letter["a_h1_s2"], sheet.letter["a_h1_s1"]
    spoiled = spoil_column(xor, "d_h1_s2", lambda f: re.sub(rf"\b{own}(\d+)", rf"{other}\1", f), 0)
    report = verify_workbook(spoiled)
    assert not report.ok
    cell = f"{sheet.letter['d_h1_s2']}{layout.FIRST_ROW}"
    named = [
        f for f in report.findings if (f.cell == cell and "δ" not in f.problem) or f.cell == cell
    ]
    assert named, report.text()
    assert any("changed inputs" in f.problem for f in named), report.text()


def test_a_bias_update_with_the_wrong_eta_is_named(xor: Path, soffice: str) -> None:
    # b1 ← b1 − 0.5·∂E/∂b1 instead of − η·∂E/∂b1: the same numbers on this sheet (η = 0.5),
    # so only the formula check on changed inputs (random η) can see it.
    sheet = xor_layout()
    spoiled = spoil_column(xor, "b1", lambda f: f.replace("$B$1", "0.5"), layout.FIRST_ROW + 1)
    report = verify_workbook(spoiled)
    assert not report.ok
    assert all(f.cell.startswith(sheet.letter["b1"]) for f in report.findings), report.text()
    (finding,) = report.findings
    assert finding.cell == f"{sheet.letter['b1']}{layout.FIRST_ROW + 1}"
    assert "formula gives a wrong b1 on changed inputs" in finding.problem


def test_the_architecture_comes_from_the_workbook(xor: Path, soffice: str, tmp_path: Path) -> None:
    # The same workbook with its Setup claiming tanh hidden units: every a_h formula is then wrong
    claimed = tmp_path / "claims-tanh.xlsx"

    def claim_tanh(text: str) -> str:
        assert text.count("<t>sigmoid, sigmoid</t>") == 1  # the activations field
        return text.replace("<t>sigmoid, sigmoid</t>", "<t>tanh, sigmoid</t>")

    edit_sheet(xor, claimed, layout.SETUP_SHEET, claim_tanh)
    report = verify_workbook(claimed)
    assert not report.ok
    a_h1 = xor_layout().letter["a_h1_s1"]
    assert any(f.cell == f"{a_h1}{layout.FIRST_ROW}" for f in report.findings), report.text()
    broken = tmp_path / "unreadable.xlsx"
    layers = "<t>2, 3, 1</t>", "<t>2, x, 1</t>"
    edit_sheet(xor, broken, layout.SETUP_SHEET, lambda text: text.replace(*layers))
    result = CliRunner().invoke(cli, ["verify", str(broken)])
    assert result.exit_code == 2
    assert "layers must be whole numbers" in result.output and "\n" not in result.output.strip()
