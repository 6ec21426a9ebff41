"""`bpxl verify` on real workbooks: built by the writer, recalculated by real LibreOffice, and
spoiled by editing the sheet XML inside the zip, the way a hand edit or a bad writer would."""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from _seed import BOOK_ETAS as ETAS
from _seed import BOOK_STEPS as STEPS
from _spoil import edit_sheet
from click.testing import CliRunner

from backprop_xlsx.cli import cli
from backprop_xlsx.mlp import layout, summary_layout
from backprop_xlsx.verify.lr_formulas import compile_formula
from backprop_xlsx.verify.workbook import verify_workbook
from backprop_xlsx.xlsx.formula import Unsupported, tokenize

SHEET = "LR 0.5"
WHERE = "'LR 0.5'!"  # how findings name a cell of SHEET


def spoil(src: Path, edit: Callable[[str], str], title: str = SHEET) -> Path:
    """A copy of `src` whose sheet `title` has its XML text passed through `edit`."""
    spoil.count += 1
    return edit_sheet(src, src.with_name(f"spoiled-{spoil.count - 1}.xlsx"), title, edit)


spoil.count = 0


def edit_cell(ref: str, change: Callable[[str], str]) -> Callable[[str], str]:
    """An edit of the XML of one cell, `<c r="U41" …>…</c>`."""
    pattern = re.compile(rf'<c r="{ref}"[^>]*?(?:/>|>.*?</c>)', re.S)

    def edit(xml: str) -> str:
        return pattern.sub(lambda m: change(m.group()), xml, count=1)

    return edit


def every_cell(column: str, change: Callable[[str], str]) -> Callable[[str], str]:
    """An edit of the XML of every cell of a column."""
    pattern = re.compile(rf'<c r="{column}\d+"[^>]*?(?:/>|>.*?</c>)', re.S)
    return lambda xml: pattern.sub(lambda m: change(m.group()), xml)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["verify", *map(str, args)])
    return result.exit_code, result.stdout, result.stderr


# --- good workbooks pass --------------------------------------------------------------------


def test_built_workbook_passes_through_libreoffice(seed_built: Path, soffice: str) -> None:
    report = verify_workbook(seed_built)  # auto: no cached values, so LibreOffice recalculates
    assert report.ok, report.text()
    assert report.engine == "libreoffice"
    cells = len(ETAS) * (STEPS + 1) * len(layout.SEED_LAYOUT.columns)
    assert sum(s.cells for s in report.sheets) == cells
    assert report.summary_cells > len(ETAS) * (STEPS + 1)
    assert report.formulas_checked == len(ETAS) * 2 * len(layout.SEED_LAYOUT.columns)
    assert [s.eta for s in report.sheets] == list(ETAS)


def test_recalculated_workbook_passes_with_cached_values(seed_recalculated: Path) -> None:
    for engine in ("cached", "auto"):
        report = verify_workbook(seed_recalculated, engine)
        assert report.ok, report.text()
        assert report.engine == "cached"
        assert max(s.max_rel for s in report.sheets) < 1e-12  # measured 3.4e-13 on LR 2


def test_json_report_matches(seed_recalculated: Path) -> None:
    code, out, _ = run(seed_recalculated, "--json")
    assert code == 0
    data = json.loads(out)
    report = verify_workbook(seed_recalculated)
    assert data["ok"] is True
    assert data["engine"] == "cached"
    assert data["cells_checked"] == report.cells_checked
    assert [s["title"] for s in data["sheets"]] == [layout.lr_sheet_title(e) for e in ETAS]
    assert data["findings"] == []


def test_text_report_is_one_screen(seed_recalculated: Path) -> None:
    code, out, _ = run(seed_recalculated)
    assert code == 0
    assert "OK" in out.splitlines()[0]
    assert len(out.splitlines()) < 24


def shared_down(column: str, si: int = 7) -> Callable[[str], str]:
    """Excel's shared formulas: the first cell below the first row keeps the text for the
    whole column, every cell after it only points to it (`<f t="shared" si="7"/>`)."""
    first, last = layout.FIRST_ROW + 1, layout.last_row(STEPS)
    pattern = re.compile(rf'<c r="{column}(\d+)"([^>]*)><f([^>]*)>([^<]*)</f>')

    def share(m: re.Match[str]) -> str:
        row, attrs, f_attrs, text = int(m[1]), m[2], m[3], m[4]
        if row < first:
            return m.group()
        head = f'<c r="{column}{row}"{attrs}><f{f_attrs} t="shared" '
        if row == first:
            return head + f'ref="{column}{first}:{column}{last}" si="{si}">{text}</f>'
        return head + f'si="{si}"/>'

    return lambda xml: pattern.sub(share, xml)


def excel_style(xml: str) -> str:
    """What Excel may do on save: 'Setup' quoted, exp lower-case, shared formulas."""
    xml = xml.replace("Setup!", "'Setup'!").replace("EXP(", "exp(")
    return shared_down("W", 3)(shared_down("X", 4)(xml))


def test_excel_style_rewrites_pass(seed_recalculated: Path) -> None:
    spoiled = spoil(seed_recalculated, excel_style)
    assert (
        't="shared" si="4"/>' in zipfile.ZipFile(spoiled).read("xl/worksheets/sheet2.xml").decode()
    )
    report = verify_workbook(spoiled, "cached")
    assert report.ok, report.text()
    assert report.formula_cells == verify_workbook(seed_recalculated).formula_cells


def test_wrong_shared_formula_is_caught_in_every_copy(seed_recalculated: Path) -> None:
    spoiled = spoil(seed_recalculated, lambda xml: shared_down(E1)(every_cell(E1, t2_for_t1)(xml)))
    report = verify_workbook(spoiled, "cached")
    assert [f.where for f in report.findings] == [f"{WHERE}{E1}4", f"{WHERE}{E1}5"]


# --- spoiled workbooks are caught, with the cell named --------------------------------------


E1, W5 = layout.SEED_LAYOUT.letter["E1"], layout.SEED_LAYOUT.letter["w5"]  # V, N
T1, T2, A_O1 = (
    layout.SEED_LAYOUT.letter["t1"],
    layout.SEED_LAYOUT.letter["t2"],
    layout.SEED_LAYOUT.letter["a_o1"],
)  # B, C, S


def t2_for_t1(cell: str) -> str:
    """E1 = 0.5*(t1 − a_o1)^2 written with t2 instead of t1."""
    return re.sub(rf"<f([^>]*)>0\.5\*\({T1}(\d+)-", rf"<f\1>0.5*({T2}\2-", cell)


def test_wrong_reference_in_one_cell(seed_recalculated: Path) -> None:
    spoiled = spoil(seed_recalculated, edit_cell(f"{E1}41", t2_for_t1))
    code, out, _ = run(spoiled, "--engine", "cached")
    assert code == 1
    assert f"{WHERE}{E1}41: formula differs from the rest of its column" in out
    assert f"found =0.5*({T2}41-{A_O1}41)^2" in out and f"expected =0.5*({T1}41-{A_O1}41)^2" in out


def test_wrong_reference_in_the_whole_column(seed_recalculated: Path) -> None:
    """Every value stays right (t1 = t2 = 0.5): only the changed-inputs check can see it."""
    spoiled = spoil(seed_recalculated, every_cell(E1, t2_for_t1))
    report = verify_workbook(spoiled, "cached")
    assert not report.ok
    where = {f.where for f in report.findings}
    assert where == {f"{WHERE}{E1}{layout.FIRST_ROW}", f"{WHERE}{E1}{layout.FIRST_ROW + 1}"}
    assert all("wrong E1 on changed inputs" in f.problem for f in report.findings)
    code, out, _ = run(spoiled, "--engine", "cached")
    assert code == 1 and f"{WHERE}{E1}{layout.FIRST_ROW + 1}" in out


def test_typed_constant_instead_of_formula(seed_recalculated: Path) -> None:
    spoiled = spoil(
        seed_recalculated, edit_cell(f"{E1}41", lambda c: re.sub(r"<f[^>]*>.*?</f>", "", c))
    )
    code, out, _ = run(spoiled, "--engine", "cached")
    assert code == 1
    assert f"{WHERE}{E1}41: typed-in value instead of a formula" in out


def test_small_offset_appended_to_a_formula(seed_built: Path, soffice: str) -> None:
    spoiled = spoil(seed_built, edit_cell(f"{E1}41", lambda c: c.replace("^2</f>", "^2+1E-9</f>")))
    code, out, _ = run(spoiled, "--engine", "libreoffice")
    assert code == 1
    assert f"{WHERE}{E1}41: formula differs from the rest of its column" in out
    assert f"{WHERE}{E1}41: wrong value of E1 in iteration 37" in out


def test_cached_value_nudged_by_1e_9_relative(seed_recalculated: Path) -> None:
    def nudge(cell: str) -> str:
        return re.sub(r"<v>([^<]+)</v>", lambda m: f"<v>{float(m[1]) * (1 + 1e-9)!r}</v>", cell)

    spoiled = spoil(seed_recalculated, edit_cell(f"{W5}41", nudge))
    report = verify_workbook(spoiled, "cached")
    assert [f.where for f in report.findings] == [f"{WHERE}{W5}41"]
    finding = report.findings[0]
    assert finding.found == pytest.approx(finding.expected * (1 + 1e-9), rel=1e-15)
    code, out, _ = run(spoiled)
    assert code == 1 and f"{WHERE}{W5}41: wrong value of w5 in iteration 37" in out


def test_summary_values_are_checked(seed_recalculated: Path) -> None:
    summary = summary_layout.SummaryLayout(len(ETAS), STEPS)
    final = f"{summary_layout.SUMMARY_COLUMNS['final']}{summary.lr_row(0)}"
    first_below = f"{summary_layout.SUMMARY_COLUMNS['first_below']}{summary.lr_row(1)}"

    def nudge(cell: str) -> str:
        return re.sub(r"<v>([^<]+)</v>", lambda m: f"<v>{float(m[1]) * (1 + 1e-9)!r}</v>", cell)

    def later(cell: str) -> str:  # one iteration later than LibreOffice found
        return re.sub(r"<v>(\d+)</v>", lambda m: f"<v>{int(m[1]) + 1}</v>", cell)

    spoiled = spoil(
        seed_recalculated,
        lambda xml: edit_cell(first_below, later)(edit_cell(final, nudge)(xml)),
        layout.SUMMARY_SHEET,
    )
    report = verify_workbook(spoiled, "cached")
    assert [f.where for f in report.findings] == [
        f"'Error vs LR'!{final}",
        f"'Error vs LR'!{first_below}",
    ]


def test_changed_eta_cell_still_passes(seed_built: Path, soffice: str) -> None:
    """The title says 0.5, B1 says 0.7: verify recomputes from the sheet's own η."""
    spoiled = spoil(seed_built, edit_cell("B1", lambda c: c.replace("<v>0.5</v>", "<v>0.7</v>")))
    report = verify_workbook(spoiled, "libreoffice")
    assert report.ok, report.text()
    assert report.sheets[0].eta == 0.7


def test_structure_findings_name_the_cell(seed_recalculated: Path) -> None:
    spoiled = spoil(
        seed_recalculated, edit_cell("B1", lambda c: re.sub(r"<v>.*?</v>", "<v>-1</v>", c))
    )
    report = verify_workbook(spoiled, "cached")
    assert f"{WHERE}B1" in {f.where for f in report.findings}


# --- errors: one line, exit 2 ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["missing", "text", "zip", "no-values"])
def test_unusable_input_is_one_line_error(kind: str, tmp_path: Path, seed_built: Path) -> None:
    args: list[str | Path] = []
    if kind == "missing":
        args = [tmp_path / "nope.xlsx"]
    elif kind == "text":
        (tmp_path / "a.xlsx").write_text("not a workbook\n")
        args = [tmp_path / "a.xlsx"]
    elif kind == "zip":
        with zipfile.ZipFile(tmp_path / "z.xlsx", "w") as z:
            z.writestr("hello.txt", "hi")
        args = [tmp_path / "z.xlsx"]
    else:
        args = [seed_built, "--engine", "cached"]
    code, out, err = run(*args)
    assert code == 2
    assert out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    if kind == "no-values":
        assert "LibreOffice" in err and "bpxl build --recalc" in err


# --- the formula compiler -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("formula", "value"),
    [
        ("-2^2", 4.0),
        ("2^3^2", 64.0),
        ("2*3+4/8-1", 5.5),
        ("EXP(0)+exp(1)", 1 + np.e),
        ("1E-9", 1e-9),
        ("1+1>1", 1.0),  # comparisons bind loosest, and count as 1 or 0
        ("(2>=2)*3+(1<>1)", 3.0),
        ("IF(2>1,3,4)+IF(1>2,10,20)", 23.0),
        ("MAX(0,-2)+MAX(0,5)", 5.0),
        ("LN(EXP(2))+TANH(0)", 2.0),
    ],
)
def test_compiler_follows_excel_precedence(formula: str, value: float) -> None:
    tokens = tokenize(formula, 5, 1, SHEET, {})
    expr, _ = compile_formula(tokens, 5, 1, False, layout.SEED_LAYOUT)
    assert expr({}) == pytest.approx(value, rel=1e-15)


@pytest.mark.parametrize(
    "formula", ["SUM(A5:B5)", "A5&B5", "A3", "SIN(A5)", "IF(A5,B5)", "Other!A5", "B$5"]
)
def test_compiler_rejects_what_the_network_does_not_need(formula: str) -> None:
    tokens = tokenize(formula, 5, 1, SHEET, {"other": "Other"})
    with pytest.raises(Unsupported):
        compile_formula(tokens, 5, 1, False, layout.SEED_LAYOUT)
