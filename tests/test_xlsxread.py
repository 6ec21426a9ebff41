"""Reading string cells as spreadsheet applications write them."""

from __future__ import annotations

import zipfile
from pathlib import Path

from _spoil import edit_part, edit_sheet

from backprop_xlsx.xlsx.read import Package

CONTENT_TYPES = (
    '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
    'content-types"/>'
)
ROOT_RELS = (
    '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/'
    'relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
    'officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>'
)
WORKBOOK = (
    '<?xml version="1.0"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/'
    'main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets>'
    '<sheet name="S" sheetId="1" r:id="rId1"/></sheets></workbook>'
)
WORKBOOK_RELS = (
    '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/'
    'relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
    'officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>'
    '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
    'relationships/sharedStrings" Target="sharedStrings.xml"/></Relationships>'
)
MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
# Pretty-printed (as Gnumeric writes), a rich-text string in two runs, and a phonetic run.
STRINGS = f"""<?xml version="1.0"?>
<sst xmlns="{MAIN}">
  <si>
    <t>t1</t>
  </si>
  <si><r><rPr><b/></rPr><t>∂E/</t></r><r><t>∂w5</t></r></si>
  <si><t>LR 2</t><rPh sb="0" eb="1"><t>ignored</t></rPh></si>
</sst>"""
SHEET = f"""<?xml version="1.0"?>
<worksheet xmlns="{MAIN}"><sheetData>
  <row r="1">
    <c r="A1" t="s"><v>0</v></c>
    <c r="B1" t="s"><v>1</v></c>
    <c r="C1" t="s"><v>2</v></c>
    <c r="D1" t="inlineStr">
      <is>
        <t>E_total</t>
      </is>
    </c>
  </row>
</sheetData></worksheet>"""


def test_string_cells_read_as_shown(tmp_path: Path) -> None:
    path = tmp_path / "strings.xlsx"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("[Content_Types].xml", CONTENT_TYPES)
        zf.writestr("_rels/.rels", ROOT_RELS)
        zf.writestr("xl/workbook.xml", WORKBOOK)
        zf.writestr("xl/_rels/workbook.xml.rels", WORKBOOK_RELS)
        zf.writestr("xl/sharedStrings.xml", STRINGS)
        zf.writestr("xl/worksheets/sheet1.xml", SHEET)
    pkg = Package(path)
    try:
        cells = pkg.cells("S")
    finally:
        pkg.close()
    assert [cells[(1, c)].value for c in (1, 2, 3, 4)] == ["t1", "∂E/∂w5", "LR 2", "E_total"]


def _grid_both_ways(path: Path, title: str, width: int) -> tuple[list, list]:
    """A sheet's rows by the text reader (Package.grid) and by lxml alone."""
    pkg = Package(path)
    try:
        text = list(pkg.grid(title, width))
        parsed = [pkg._grid_row(el, row, title, width, {}) for row, el in pkg._sheet(title)]
    finally:
        pkg.close()
    return text, parsed


def test_a_wide_row_reads_alike_as_text_and_by_lxml(tmp_path: Path) -> None:
    # wider than one compiled piece (PIECE cells), and not a multiple of it
    import numpy as np

    from backprop_xlsx.mlp import description, layout
    from backprop_xlsx.mlp.workbook import build_workbook
    from backprop_xlsx.xlsx.read import PIECE

    rng = np.random.default_rng(0)
    net = description.from_mapping(
        {"layers": [2, 16, 16, 1], "activations": ["relu", "relu", "linear"], "loss": "mse",
         "bias": True, "inputs": rng.uniform(-1, 1, (3, 2)).tolist(),
         "targets": rng.uniform(-1, 1, (3, 1)).tolist()}
    )  # fmt: skip
    width = len(layout.SheetLayout(net).columns)
    assert width > 2 * PIECE and width % PIECE
    path = tmp_path / "wide.xlsx"
    build_workbook(net, [0.1], 3, path)
    title = layout.lr_sheet_title(0.1)
    text, parsed = _grid_both_ways(path, title, width)
    assert None not in text  # no restart: the text reader kept up
    plain = [r for r in text if r.types is None]  # the rows matched as text
    assert len(plain) == 4  # the four iterations
    assert [(r.row, list(r.formulas), list(r.values)) for r in text] == [
        (r.row, list(r.formulas), list(r.values)) for r in parsed
    ]
    # a cell in the second piece that names another column: not plain, so lxml reads that row
    letter = layout.SheetLayout(net).columns[PIECE + 5].letter
    other = layout.SheetLayout(net).columns[PIECE + 6].letter
    row = layout.FIRST_ROW + 1
    spoiled = tmp_path / "spoiled.xlsx"
    moved = f'<c r="{other}{row}"'
    edit_sheet(path, spoiled, title, lambda xml: xml.replace(f'<c r="{letter}{row}"', moved))
    text, parsed = _grid_both_ways(spoiled, title, width)
    assert None not in text
    assert [r.row for r in text if r.types is None] == [
        layout.FIRST_ROW,
        layout.FIRST_ROW + 2,
        layout.FIRST_ROW + 3,
    ]
    assert [(r.row, list(r.formulas), list(r.values)) for r in text] == [
        (r.row, list(r.formulas), list(r.values)) for r in parsed
    ]


def test_merge_computed_takes_only_the_engines_values() -> None:
    """A formula cell takes the recalculated copy's value; one the copy lacks has none (the
    original's cached value may be bpxl's own NumPy value, which proves nothing); a typed-in
    cell keeps the original's value even where the copy rounded it."""
    from backprop_xlsx.xlsx.read import Cell, merge_computed

    original = {
        (1, 1): Cell("B1*2", "4", "n"),  # computed by the copy
        (1, 2): Cell("B1*3", "6", "n"),  # missing from the copy
        (1, 3): Cell(None, "0.1234567890123456", "n"),  # typed in
    }
    computed = {
        (1, 1): Cell("B1*2", "5", "n"),
        (1, 3): Cell(None, "0.123456789012346", "n"),
    }
    merged = merge_computed(original, computed)
    assert merged[(1, 1)] == Cell("B1*2", "5", "n")
    assert merged[(1, 2)] == Cell("B1*3", None, "n")
    assert merged[(1, 3)] == original[(1, 3)]
    assert original[(1, 1)].value == "4"  # the original is left as it was


def test_workbook_facts_are_read_through_the_one_reader(tmp_path: Path) -> None:
    """Sheets (a chartsheet too), custom properties and the cells asked for, as Excel saved them;
    a Strict OOXML workbook is refused, not read as one without sheets (a rebuild would then
    replace it without keeping any of them)."""
    import json

    import pytest
    from openpyxl import Workbook
    from openpyxl.packaging.custom import StringProperty

    from backprop_xlsx.errors import BpxlError
    from backprop_xlsx.xlsx.facts import workbook_facts

    wb = Workbook()
    ws = wb.active
    ws.title = "Setup"
    ws["A1"], ws["B3"], ws["C9"] = "bpxl: a note", 2.5, "below the last row asked for"
    wb.create_chartsheet("Chart")
    wb.create_sheet("Other")
    wb.custom_doc_props.append(StringProperty(name="bpxl.sheets", value=json.dumps(["Setup"])))
    path = tmp_path / "book.xlsx"
    wb.save(path)
    facts = workbook_facts(path, [("Setup", "A1"), ("Setup", "B3"), ("Setup", "Z1"), ("No", "A1")])
    assert facts.sheets == ["Setup", "Chart", "Other"]
    assert facts.properties == {"bpxl.sheets": '["Setup"]'}
    assert facts.cells == {("Setup", "A1"): "bpxl: a note", ("Setup", "B3"): "2.5"}

    strict = tmp_path / "strict.xlsx"
    strict_main = "http://purl.oclc.org/ooxml/spreadsheetml/main"
    edit_part(path, strict, "xl/workbook.xml", lambda xml: xml.replace(MAIN, strict_main))
    with pytest.raises(BpxlError, match="Strict OOXML is not supported"):
        workbook_facts(strict)
