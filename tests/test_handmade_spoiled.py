"""The grader on hand-layout workbooks built here, each spoiled in one known way.

The tables are written as a student would (openpyxl, formulas typed by this test, in the test's
own spelling), then changed: another column order, label variants, a missing column, a typed
number, a formula that changes meaning partway down, η read by a reference that moves, an
unfinished table. One finding each, at the cell that was spoiled; the unspoiled tables pass.
One table is recalculated by real LibreOffice so that its values are checked too.
"""

from __future__ import annotations

from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner
from openpyxl.utils import get_column_letter

from backprop_xlsx.cli import cli
from backprop_xlsx.handmade.grade import grade_workbook

ORDER = ["t1", "t2", "i1", "i2", "w1", "w2", "w3", "w4", "h1", "a_h1", "h2", "a_h2",
         "w5", "w6", "w7", "w8", "o1", "a_o1", "o2", "a_o2", "E1", "E2", "E_total",
         *[f"∂E/∂w{k}" for k in range(1, 9)]]  # fmt: skip
# The formulas as a student types them: {q} is this row's cell, {q'} the row above's, {eta} η.
FORMULAS = {
    "h1": "={w1}*{i1}+{w2}*{i2}",
    "a_h1": "=1/(1+EXP(-{h1}))",
    "h2": "={w3}*{i1}+{w4}*{i2}",
    "a_h2": "=1/(1+EXP(-{h2}))",
    "o1": "={w5}*{a_h1}+{w6}*{a_h2}",
    "a_o1": "=1/(1+EXP(-{o1}))",
    "o2": "={w7}*{a_h1}+{w8}*{a_h2}",
    "a_o2": "=1/(1+EXP(-{o2}))",
    "E1": "=0.5*({t1}-{a_o1})^2",
    "E2": "=0.5*({t2}-{a_o2})^2",
    "E_total": "={E1}+{E2}",
    "∂E/∂w5": "=({a_o1}-{t1})*{a_o1}*(1-{a_o1})*{a_h1}",
    "∂E/∂w6": "=({a_o1}-{t1})*{a_o1}*(1-{a_o1})*{a_h2}",
    "∂E/∂w7": "=({a_o2}-{t2})*{a_o2}*(1-{a_o2})*{a_h1}",
    "∂E/∂w8": "=({a_o2}-{t2})*{a_o2}*(1-{a_o2})*{a_h2}",
    "∂E/∂w1": "=(({a_o1}-{t1})*{a_o1}*(1-{a_o1})*{w5}+({a_o2}-{t2})*{a_o2}*(1-{a_o2})*{w7})"
    "*{a_h1}*(1-{a_h1})*{i1}",
    "∂E/∂w2": "=(({a_o1}-{t1})*{a_o1}*(1-{a_o1})*{w5}+({a_o2}-{t2})*{a_o2}*(1-{a_o2})*{w7})"
    "*{a_h1}*(1-{a_h1})*{i2}",
    "∂E/∂w3": "=(({a_o1}-{t1})*{a_o1}*(1-{a_o1})*{w6}+({a_o2}-{t2})*{a_o2}*(1-{a_o2})*{w8})"
    "*{a_h2}*(1-{a_h2})*{i1}",
    "∂E/∂w4": "=(({a_o1}-{t1})*{a_o1}*(1-{a_o1})*{w6}+({a_o2}-{t2})*{a_o2}*(1-{a_o2})*{w8})"
    "*{a_h2}*(1-{a_h2})*{i2}",
    **{f"w{k}": f"={{w{k}'}}-{{eta}}*{{∂E/∂w{k}'}}" for k in range(1, 9)},
}
START = {"t1": 0.01, "t2": 0.99, "i1": 0.05, "i2": 0.1, "w1": 0.15, "w2": 0.2, "w3": 0.25,
         "w4": 0.3, "w5": 0.4, "w6": -0.45, "w7": 0.5, "w8": 0.55}  # fmt: skip
HEADER, FIRST_COL, ROWS, ETA_CELL = 6, 2, 12, "D4"


def write_table(
    path: Path,
    order: list[str] = ORDER,
    labels: dict[str, str] | None = None,
    formulas: dict[str, str] | None = None,
    spoil=None,  # (sheet, col_of) → None: change cells after writing
    rows: int = ROWS,
    start: dict[str, float] = START,
) -> Path:
    """A hand-made table: η labelled two rows above the header, inputs typed in every row."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Backprop"
    ws["C4"], ws[ETA_CELL] = "η =", 0.5
    col_of = {q: FIRST_COL + i for i, q in enumerate(order)}
    ws.cell(HEADER, FIRST_COL - 1, "Step")
    for q, c in col_of.items():
        ws.cell(HEADER, c, (labels or {}).get(q, q))
    given = {**FORMULAS, **(formulas or {})}
    for n in range(rows):
        row = HEADER + 1 + n
        ws.cell(row, FIRST_COL - 1, n)

        def name(key: str, row: int = row) -> str:
            if key == "eta":
                return "$" + ETA_CELL[0] + "$" + ETA_CELL[1:]
            if key.endswith("'"):
                return f"{get_column_letter(col_of[key[:-1]])}{row - 1}"
            return f"{get_column_letter(col_of[key])}{row}"

        for q, c in col_of.items():
            if q in start and (n == 0 or not q.startswith("w")):
                ws.cell(row, c, start[q])
            else:
                text = given[q]
                for key in sorted(col_of, key=len, reverse=True):
                    for mark in ("'", ""):
                        text = text.replace("{" + key + mark + "}", name(key + mark))
                ws.cell(row, c, text.replace("{eta}", name("eta")))
    if spoil is not None:
        spoil(ws, col_of)
    wb.save(path)
    return path


def findings(path: Path) -> list[tuple[str, str, str]]:
    return [(f.quantity, f.kind, f.first_cell) for f in grade_workbook(path).findings]


def cell(col_of: dict[str, int], q: str, row: int) -> str:
    return f"{get_column_letter(col_of[q])}{row}"


def at(q: str, row: int, order: list[str] = ORDER) -> str:
    """Where write_table puts quantity q in a row."""
    return f"{get_column_letter(FIRST_COL + order.index(q))}{row}"


def test_a_correct_table_passes_with_exit_0(tmp_path: Path) -> None:
    path = write_table(tmp_path / "ok.xlsx")
    grade = grade_workbook(path)
    assert grade.verdict == "correct", [f.to_dict() for f in grade.findings]
    table = grade.tables[0].to_dict()
    assert (table["header_row"], table["first_col"], table["rows"]) == (HEADER, "B", ROWS)
    assert (table["eta"], table["eta_cell"], table["eta_label"]) == (0.5, ETA_CELL, "η =")
    assert table["unknown_labels"] == ["Step"]
    assert CliRunner().invoke(cli, ["verify", str(path)]).exit_code == 0


def test_another_column_order_and_label_variants_pass(tmp_path: Path) -> None:
    order = ORDER[4:8] + ORDER[12:16] + ORDER[:4] + ORDER[8:12] + ORDER[16:][::-1]
    labels = {"a_h1": "out_h1", "a_h2": "act_h2", "a_o1": "out_o1 ", "E_total": "E Total",
              "∂E/∂w1": "dE/dw1", "∂E/∂w3": "δE_tot/δw3", "∂E/∂w5": "∂E_total/∂W5 ",
              "∂E/∂w6": "ӘE/Әw6", "∂E/∂w7": "Etotaldw7", "∂E/∂w8": "dw8"}  # fmt: skip
    path = write_table(tmp_path / "order.xlsx", order, labels)
    grade = grade_workbook(path)
    assert grade.verdict == "correct", [f.to_dict() for f in grade.findings]
    assert grade.tables[0].table.labels["∂E/∂w6"] == "ӘE/Әw6"


def test_a_missing_column_is_one_finding(tmp_path: Path) -> None:
    order = [q for q in ORDER if q != "E2"]
    path = write_table(
        tmp_path / "missing.xlsx", order, formulas={"E_total": "={E1}+0.5*({t2}-{a_o2})^2"}
    )
    assert findings(path) == [("E2", "missing_column", f"AF{HEADER}")]


def test_a_typed_number_is_named(tmp_path: Path) -> None:
    def spoil(ws, col_of) -> None:
        ws[cell(col_of, "∂E/∂w5", 9)] = 0.0123

    path = write_table(tmp_path / "typed.xlsx", spoil=spoil)
    assert findings(path) == [("∂E/∂w5", "typed", at("∂E/∂w5", 9))]


def test_a_formula_changing_meaning_partway_is_named_where_it_changes(tmp_path: Path) -> None:
    """E1 reads t2 from row 10 on; t1 ≠ t2 is not needed to see it. The updates write η as
    $D$4 above row 12 and as D$4 below: the same meaning, no finding."""

    def spoil(ws, col_of) -> None:
        for row in range(10, HEADER + ROWS + 1):
            t2, a_o1 = cell(col_of, "t2", row), cell(col_of, "a_o1", row)
            ws[cell(col_of, "E1", row)] = f"=0.5*({t2}-{a_o1})^2"
        for row in range(12, HEADER + ROWS + 1):
            w, g = cell(col_of, "w1", row - 1), cell(col_of, "∂E/∂w1", row - 1)
            ws[cell(col_of, "w1", row)] = f"={w}-D$4*{g}"

    path = write_table(tmp_path / "partway.xlsx", spoil=spoil)
    got = findings(path)
    assert got == [("E1", "formula", at("E1", 10))]
    grade = grade_workbook(path).findings[0]
    assert "reads t2 (C) where t1 (B) belongs" in grade.message
    assert grade.should_read == "=1/2*(B10-S10)^2"


def test_eta_by_a_moving_reference_is_named_in_every_weight(tmp_path: Path) -> None:
    """`D4` filled down reads η in the first update only, then the cells below it."""

    def spoil(ws, col_of) -> None:
        for row in range(HEADER + 2, HEADER + ROWS + 1):
            for k in range(1, 9):
                w, g = cell(col_of, f"w{k}", row - 1), cell(col_of, f"∂E/∂w{k}", row - 1)
                ws[cell(col_of, f"w{k}", row)] = f"={w}-D{row - 4}*{g}"  # D4, D5, …

    path = write_table(tmp_path / "moving.xlsx", spoil=spoil)
    got = findings(path)
    assert [q for q, _, _ in got] == [f"w{k}" for k in range(1, 9)]
    assert [(kind, first) for _, kind, first in got] == [
        ("formula", at(f"w{k}", HEADER + 3)) for k in range(1, 9)
    ]


def test_an_unfinished_table_is_named(tmp_path: Path) -> None:
    def spoil(ws, col_of) -> None:
        for q, c in col_of.items():
            if not (q.startswith("w") or q in START):
                ws.cell(HEADER + 2, c).value = None

    path = write_table(tmp_path / "unfinished.xlsx", rows=2, spoil=spoil)
    assert findings(path) == [("h1", "unfinished_table", at("h1", HEADER + 2))]
    assert "unfinished: 1 iteration" in grade_workbook(path).findings[0].message


def test_no_table_exits_2_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "none.xlsx"
    wb = openpyxl.Workbook()
    wb.active["A1"] = "w1"
    wb.save(path)
    result = CliRunner().invoke(cli, ["verify", str(path)])
    assert result.exit_code == 2
    assert "no header row with w1…w8" in result.output


def test_mazur_fixed_biases(tmp_path: Path) -> None:
    """Mazur's worked example: b1 and b2 as columns, added to h1, h2 and o1, o2."""
    order = [*ORDER[:4], "b1", "b2", *ORDER[4:]]
    start = {**START, "b1": 0.35, "b2": 0.6}
    biased = {
        "h1": "={w1}*{i1}+{w2}*{i2}+{b1}", "h2": "={w3}*{i1}+{w4}*{i2}+{b1}",
        "o1": "={w5}*{a_h1}+{w6}*{a_h2}+{b2}", "o2": "={w7}*{a_h1}+{w8}*{a_h2}+{b2}",
    }  # fmt: skip
    path = write_table(tmp_path / "mazur.xlsx", order, formulas=biased, start=start)
    assert grade_workbook(path).verdict == "correct"
    wrong = write_table(tmp_path / "nobias.xlsx", order, start=start)  # biases left out
    assert [q for q, _, _ in findings(wrong)] == ["h1", "h2", "o1", "o2"]


@pytest.mark.slow
def test_values_recalculated_by_libreoffice_are_checked(tmp_path: Path, soffice: str) -> None:
    """With real cached values, a value that the formulas cannot explain is named too."""
    from backprop_xlsx.xlsx.libreoffice import recalculate

    ok = recalculate(write_table(tmp_path / "ok.xlsx"), tmp_path / "ok_calc.xlsx")
    grade = grade_workbook(ok)
    assert grade.verdict == "correct", [f.to_dict() for f in grade.findings]

    def spoil(ws, col_of) -> None:
        ws[cell(col_of, "h2", 11)] = 0.0425  # typed: the row's own weights give another value

    bad = recalculate(write_table(tmp_path / "bad.xlsx", spoil=spoil), tmp_path / "bad_c.xlsx")
    assert findings(bad) == [("h2", "typed", at("h2", 11))]


def test_a_bad_file_in_a_class_is_one_row_and_the_rest_is_graded(tmp_path: Path) -> None:
    folder = tmp_path / "class"
    folder.mkdir()
    write_table(folder / "a_ok.xlsx")
    (folder / "b_garbage.xlsx").write_bytes(b"PK\x03\x04 not really a zip")
    (folder / "c_notes.txt").write_text("not a workbook")
    out = tmp_path / "grades.csv"
    result = CliRunner().invoke(cli, ["verify", str(folder), "--csv", str(out), "--workers", "2"])
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert lines[-1] == "2 files: 1 correct, 0 wrong, 1 cannot be checked"
    assert "not an xlsx workbook" in next(line for line in lines if line.startswith("b_garbage"))
    assert out.read_text(encoding="utf-8").splitlines()[1].startswith("a_ok.xlsx,correct,1,12,0,")


def test_a_damaged_file_alone_is_one_error_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.xlsx"
    path.write_bytes(b"\x00" * 100)
    result = CliRunner().invoke(cli, ["verify", str(path)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and result.output.startswith("error: ")
