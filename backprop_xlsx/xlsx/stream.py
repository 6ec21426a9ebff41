"""Many plain cells streamed into a sheet that openpyxl saved, instead of through openpyxl.

openpyxl makes everything a person sees once (titles, headers, charts, colour scales, one cell of
each style), but at ~60 µs per styled cell it took 11 s for the CNN sheets' ~125,000 cells
(feature-map formulas, weights, 78,400 pixels), against a 5 s budget. Here the bulk cells are
kept as ready XML and merged, row by row and in column order, into the sheetData openpyxl wrote,
reusing the style ids openpyxl gave each style's first cell: the same cells, written in ~1 s
(measured by benchmarks/bench_netsheet.py).
"""

from __future__ import annotations

import io
import numbers
import re
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

from lxml import etree
from openpyxl.utils import get_column_letter

from backprop_xlsx.xlsx.read import NS_MAIN, safe_parser, sheet_parts

_LETTERS = [""] + [get_column_letter(c) for c in range(1, 16385)]
_C = f"{{{NS_MAIN}}}c"


def number_text(value: float | int) -> str:
    """A cell's number as stored: a whole number as is, any other as the shortest text that reads
    back as the same double, `repr(float(x))`, whatever type (and NumPy release) it came from."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return str(int(value))
    return repr(float(value))


class Bulk:
    """The bulk cells of one sheet: row → [(column, cell XML)], each style named by a key.

    `prototype[key]` is the (row, column) of a cell openpyxl wrote with that style; its style id
    is read from the saved XML, so the bulk cells look exactly like it.
    """

    def __init__(self, title: str) -> None:
        self.title = title
        self.rows: dict[int, list[tuple[int, str]]] = {}
        self.prototype: dict[str, tuple[int, int]] = {}

    def number(self, row: int, col: int, value: float | int, style: str | None = None) -> None:
        self._add(row, col, f"<v>{number_text(value)}</v>", style)

    def formula(self, row: int, col: int, text: str, style: str | None = None) -> None:
        """`text` with its leading '='."""
        self._add(row, col, f"<f>{escape(text[1:])}</f>", style)

    def _add(self, row: int, col: int, inner: str, style: str | None) -> None:
        s = "" if style is None else "\0" + style + "\0"
        self.rows.setdefault(row, []).append((col, f'<c r="{_LETTERS[col]}{row}"{s}>{inner}</c>'))

    def merge(self, sheet_xml: bytes) -> bytes:
        """The sheet's XML with the bulk cells in place."""
        text = sheet_xml.decode("utf-8")
        start = text.index("<sheetData")
        end = text.index("</sheetData>") + len("</sheetData>") if "</sheetData>" in text else None
        if end is None:  # an empty <sheetData/>
            end = text.index("/>", start) + 2
        data = etree.fromstring(  # openpyxl's own output, parsed safely all the same
            text[start:end].replace("<sheetData", f'<sheetData xmlns="{NS_MAIN}"', 1),
            safe_parser(),
        )
        styles = {}
        existing: dict[int, tuple[dict[str, str], list[tuple[int, str]]]] = {}
        for row_el in data:
            r = int(row_el.get("r"))
            attrs = {k: v for k, v in row_el.attrib.items() if k not in ("r", "spans")}
            cells = []
            for c in row_el.iter(_C):
                name = c.get("r")
                col = _column(name.rstrip("0123456789"))
                xml = etree.tostring(c, encoding="unicode").replace(f' xmlns="{NS_MAIN}"', "")
                cells.append((col, xml))
                for key, (pr, pc) in self.prototype.items():
                    if (pr, pc) == (r, col):
                        styles[key] = c.get("s", "0")
            existing[r] = (attrs, cells)
        missing = set(self.prototype) - set(styles)
        if missing:
            raise AssertionError(f"{self.title}: no prototype cell for styles {sorted(missing)}")
        out = ["<sheetData>"]
        last_col = 1
        for r in sorted(set(existing) | set(self.rows)):
            attrs, cells = existing.get(r, ({}, []))
            bulk = self.rows.get(r, [])
            merged = sorted(cells + bulk, key=lambda item: item[0])
            if merged:
                last_col = max(last_col, merged[-1][0])
            extra = "".join(f' {k}="{escape(v, {chr(34): "&quot;"})}"' for k, v in attrs.items())
            out.append(f'<row r="{r}"{extra}>')
            out.append("".join(xml for _, xml in merged))
            out.append("</row>")
        out.append("</sheetData>")
        body = "".join(out)
        body = re.sub("\0([^\0]*)\0", lambda m: f' s="{styles[m.group(1)]}"', body)
        last_row = max(set(existing) | set(self.rows), default=1)
        head = re.sub(
            r'<dimension ref="[^"]*"\s*/>',
            f'<dimension ref="A1:{_LETTERS[last_col]}{last_row}"/>',
            text[:start],
            count=1,
        )
        return (head + body + text[end:]).encode("utf-8")


def _column(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - 64
    return n


def save_with_bulk(workbook_bytes: bytes, path: Path, bulks: list[Bulk]) -> None:
    """Copy openpyxl's saved package to `path` with each Bulk merged into its sheet."""
    with zipfile.ZipFile(io.BytesIO(workbook_bytes)) as zin:
        _, parts = sheet_parts(zin)
        by_part = {parts[b.title]: b for b in bulks}
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zout:
            for info in zin.infolist():
                data = zin.read(info)
                bulk = by_part.get(info.filename)
                zout.writestr(info.filename, data if bulk is None else bulk.merge(data))
