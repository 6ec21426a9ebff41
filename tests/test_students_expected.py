"""The expected verdicts for the student workbooks stay well-formed for the grader's tests."""

import re
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

EXPECTED = Path(__file__).parent / "data" / "students_expected.toml"
QUANTITY = re.compile(r"^(t[12]|i[12]|w[1-8]|[ho][12]|a_[ho][12]|E[12]|E_total|∂E/∂w[1-8])$")
CELL = re.compile(r"^[A-Z]{1,3}[1-9][0-9]*$")


def test_every_student_file_has_a_well_formed_verdict() -> None:
    data = tomllib.loads(EXPECTED.read_text(encoding="utf-8"))
    assert len(data) == 25
    assert [name[:2] for name in data] == [f"{k:02d}" for k in range(1, 26)]
    for name, entry in data.items():
        assert entry["verdict"] in {"correct", "wrong", "cannot_check"}, name
        if entry["verdict"] == "cannot_check":
            assert entry["reason"], name
            assert entry["findings"] == [], name
        if entry["verdict"] == "correct":
            assert entry["findings"] == [], name
            assert entry["tables"], name
        if entry["verdict"] == "wrong":
            assert entry["findings"], name
        sheets = set(entry["sheets"])
        for table in entry["tables"]:
            assert table["sheet"] in sheets, name
            assert all(QUANTITY.match(q) for q in table["labels"]), name
        for finding in entry["findings"]:
            assert finding["sheet"] in sheets, name
            assert QUANTITY.match(finding["quantity"]), (name, finding["quantity"])
            assert CELL.match(finding["first_cell"]), (name, finding["first_cell"])
            assert finding["should_read"] and finding["effect"], name
