"""The grader on the course's 25 real student workbooks, read from ../shared (never copied here).

What each file must get is tests/data/students_expected.toml, established by reading the formulas
and by an independent recomputation (scripts/student_oracle.py), never by running the grader.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from backprop_xlsx.cli import cli
from backprop_xlsx.handmade.grade import grade_workbook

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

EXPECTED = tomllib.loads(
    (Path(__file__).parent / "data" / "students_expected.toml").read_text(encoding="utf-8")
)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_student_file_gets_the_established_verdict(students_dir: Path, name: str) -> None:
    want = EXPECTED[name]
    grade = grade_workbook(students_dir / name).to_dict()
    assert grade["verdict"] == want["verdict"], grade["reason"]
    assert len(grade["tables"]) == len(want["tables"])
    for got, table in zip(grade["tables"], want["tables"], strict=True):
        for key in ("sheet", "header_row", "first_col", "first_row", "rows", "eta_cell"):
            assert got[key] == table[key], (key, got[key], table[key])
        assert got["eta"] == table.get("eta")
        assert got["eta_label"] == table["eta_label"]
        assert got["labels"] == table["labels"]
    unknown = [u for t in grade["tables"] for u in t["unknown_labels"]]
    assert sorted(set(unknown)) == sorted(want["unknown_labels"])
    got_findings = sorted((f["sheet"], f["quantity"], f["first_cell"]) for f in grade["findings"])
    want_findings = sorted((f["sheet"], f["quantity"], f["first_cell"]) for f in want["findings"])
    assert got_findings == want_findings
    by_cell = {(f["sheet"], f["first_cell"], f["quantity"]): f for f in grade["findings"]}
    for f in want["findings"]:
        got = by_cell[(f["sheet"], f["first_cell"], f["quantity"])]
        assert got["kind"] == f["kind"], (f["first_cell"], got["kind"], f["kind"])
        if f["kind"] == "formula":
            assert got["found_formula"] == f["found_formula"]
            assert got["should_read"] == f["should_read"]


def test_the_seed_workbook_names_e1_reading_t2(students_dir: Path) -> None:
    """The project's own origin: E1 reads t2, hidden because t1 = t2 in every row."""
    result = CliRunner().invoke(cli, ["verify", str(students_dir / "01_senthilva_ERA1.xlsx")])
    assert result.exit_code == 1, result.output
    assert "E1  Sheet2!U31 (107 rows): reads t2 (B) where t1 (A) belongs" in result.output
    assert "should read =1/2*(A31-R31)^2" in result.output
    assert result.output.rstrip().endswith("WRONG: 1 wrong quantity (E1) in 1 table")


@pytest.mark.parametrize(
    ("name", "code"),
    [("04_RashiTech_ERAV1.xlsx", 0), ("02_Navyabhat03_ERAV1S6.xlsx", 1),
     ("13_arvinder0603_ERAV2A6.xlsx", 2), ("25_Americium95_bpxlsl.xlsx", 2)],
)  # fmt: skip
def test_exit_codes_and_json(students_dir: Path, name: str, code: int) -> None:
    result = CliRunner().invoke(cli, ["verify", "--json", str(students_dir / name)])
    assert result.exit_code == code, result.output
    data = json.loads(result.output)
    if name.startswith("25"):
        assert data["ok"] is False and "no header row with w1…w8" in data["error"]
        return
    assert data["verdict"] == EXPECTED[name]["verdict"]
    for t in data["tables"]:
        assert {"sheet", "header_row", "eta", "rows"} <= set(t)
    assert [f["quantity"] for f in data["findings"]] == [
        f["quantity"] for f in EXPECTED[name]["findings"]
    ]


@pytest.mark.slow
def test_a_folder_is_a_class(students_dir: Path, tmp_path: Path) -> None:
    """The folder at once, in parallel: one row per file, CSV for a gradebook, worst exit."""
    out = tmp_path / "class.csv"
    result = CliRunner().invoke(
        cli, ["verify", str(students_dir), "--csv", str(out), "--workers", "2"]
    )
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert lines[-1] == "25 files: 8 correct, 15 wrong, 2 cannot be checked"
    for name, want in EXPECTED.items():
        row = next(line for line in lines if line.startswith(name))
        assert re.search(rf"\s{want['verdict'].replace('_', ' ')}\b", row), row
    rows = out.read_text(encoding="utf-8").splitlines()
    assert rows[0].startswith("file,verdict,tables")
    assert len(rows) == 26
    assert rows[1].startswith("01_senthilva_ERA1.xlsx,wrong,1,107,1,E1,")
