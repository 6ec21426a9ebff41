"""Reading string cells as spreadsheet applications write them."""

from __future__ import annotations

import zipfile
from pathlib import Path

from backprop_xlsx.xlsxread import Package

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
