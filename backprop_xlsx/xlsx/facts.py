"""What a workbook says about itself: who saved it, its custom properties, its sheets, a few cells.

Read through read.Package, the one reader of untrusted workbooks, so these facts get the same
bounds and the same one-line errors as every cell `bpxl verify` reads; only the sheets a caller
asks cells of are read, and each only up to the last row asked for.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from backprop_xlsx.xlsx.formula import cell_key
from backprop_xlsx.xlsx.parts import NS_R, parse_xml, part_rels, read_part
from backprop_xlsx.xlsx.read import Package

RT_CUSTOM_PROPERTIES = f"{NS_R}/custom-properties"
NS_CUSTOM = "http://schemas.openxmlformats.org/officeDocument/2006/custom-properties"
_SMALL_PART = 16 << 20  # docProps parts: a few hundred bytes in practice


@dataclass(frozen=True)
class WorkbookFacts:
    """What a rebuild needs to know of an existing workbook, read without loading its sheets."""

    sheets: list[str]  # titles, in workbook order
    properties: dict[str, str]  # custom document properties with a text value
    cells: dict[tuple[str, str], str]  # (sheet, cell) -> its text, for the cells asked for


def workbook_facts(path: Path, cells: Sequence[tuple[str, str]] = ()) -> WorkbookFacts:
    """Sheet titles, custom document properties and the text of a few cells (like ("Setup",
    "A1")) of xlsx `path`; BpxlError if `path` is not an xlsx workbook."""
    pkg = Package(Path(path))
    try:
        found: dict[tuple[str, str], str] = {}
        for title in sorted({sheet for sheet, _ in cells if sheet in pkg.parts}):
            at = {cell_key(ref): ref for sheet, ref in cells if sheet == title}
            if not at:
                continue
            width = max(col for _, col in at)
            last = max(row for row, _ in at)
            for key, cell in pkg.cells(title, width, last).items():
                if key in at:
                    found[(title, at[key])] = cell.value or ""
        return WorkbookFacts(list(pkg.sheets), custom_properties(pkg), found)
    finally:
        pkg.close()


def custom_properties(pkg: Package) -> dict[str, str]:
    """The workbook's custom document properties that have a text value, by name."""
    properties: dict[str, str] = {}
    for kind, part in part_rels(pkg.zip, "").values():
        if kind == RT_CUSTOM_PROPERTIES and part in pkg.zip.NameToInfo:
            where = f"cannot read {pkg.path}: part {part}"
            root = parse_xml(read_part(pkg.zip, part, where, _SMALL_PART), where)
            for prop in root.iter(f"{{{NS_CUSTOM}}}property"):
                value = next((el.text for el in prop if len(el) == 0), None)
                if prop.get("name") and value is not None:
                    properties[prop.get("name", "")] = value
    return properties


def application(pkg: Package) -> str | None:
    """docProps/app.xml's Application: who saved the file (bpxl, LibreOffice, Excel, …); None
    when it does not say or the part cannot be read (a hint, never a reason to stop)."""
    info = pkg.zip.NameToInfo.get("docProps/app.xml")
    if info is None or info.file_size > _SMALL_PART:
        return None
    try:
        text = pkg.zip.read(info).decode("utf-8", "replace")
    except (OSError, zipfile.BadZipFile, zlib.error):
        return None
    found = re.search(r"<(?:\w+:)?Application>([^<]*)</", text)
    return found.group(1).strip() if found else None
