"""Many plain cells streamed into the sheets openpyxl saved, instead of through openpyxl.

openpyxl writes what a person sees once (titles, headers, charts, one cell of each style); at
~60 µs per styled cell it is far too slow for the bulk (the CNN sheets' ~125,000 cells took 11 s;
an LR sheet has millions). The bulk is written here as XML, reusing the style ids openpyxl gave
the template cells, in two shapes: `Bulk`, cells placed anywhere and merged into the sheetData
in row and column order (the trained net's sheets), and `PatternRows`, rows made from one
pattern per row and streamed in chunks (the LR sheets and the E_total table), with
`fill_values` putting NumPy's cached values into openpyxl's empty formula cells. `LETTERS` is
the one column-letter table.
"""

from __future__ import annotations

import io
import math
import numbers
import re
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from lxml import etree
from openpyxl.utils import get_column_letter

from backprop_xlsx.xlsx.formula import column_number
from backprop_xlsx.xlsx.parts import NS_MAIN, safe_parser, sheet_parts

LETTERS = ["", *(get_column_letter(c) for c in range(1, 16385))]  # column → letters: ~20 M lookups
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

    def formula(
        self, row: int, col: int, text: str, style: str | None = None, value: float | None = None
    ) -> None:
        """`text` with its leading '='; `value`, when given, is its cached value."""
        cached = "" if value is None or not math.isfinite(value) else f"<v>{number_text(value)}</v>"
        self._add(row, col, f"<f>{escape(text[1:])}</f>{cached}", style)

    def _add(self, row: int, col: int, inner: str, style: str | None) -> None:
        s = "" if style is None else "\0" + style + "\0"
        self.rows.setdefault(row, []).append((col, f'<c r="{LETTERS[col]}{row}"{s}>{inner}</c>'))

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
                col = column_number(name.rstrip("0123456789"))
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
            f'<dimension ref="A1:{LETTERS[last_col]}{last_row}"/>',
            text[:start],
            count=1,
        )
        return (head + body + text[end:]).encode("utf-8")


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


CHUNK_ROWS = 2000  # rows formatted per string join: bounded memory, few calls


_EMPTY_VALUE = re.compile(
    r'(<c r="([A-Z]+[0-9]+)"[^>]*?)(\s*t="[^"]*")?(\s*>(?:<f[^>]*>.*?</f>|<f[^>]*/>))<v></v>'
)


def fill_values(xml: str, values: Mapping[str, float | str]) -> str:
    """Put a value into the empty <v></v> openpyxl writes after each formula of `values`."""
    if not values:
        return xml

    def fill(m: re.Match[str]) -> str:
        value = values.get(m[2])
        if value is None or (not isinstance(value, str) and not math.isfinite(value)):
            return m[0]
        if isinstance(value, str):  # a formula whose result is text
            return f'{m[1]} t="str"{m[4]}<v>{escape(value)}</v>'
        return f"{m[1]}{m[3] or ''}{m[4]}<v>{shortest_text(value)}</v>"

    return _EMPTY_VALUE.sub(fill, xml)


def shortest_text(value: float) -> str:
    """A cached value as stored: the shortest text that reads back as the same double."""
    return repr(float(value))


@dataclass(frozen=True)
class FilledSheet:
    """A sheet openpyxl wrote whole, whose formula cells get NumPy's values."""

    values: Mapping[str, float | str]

    def stream(self, sheet_xml: bytes) -> Iterator[bytes]:
        yield fill_values(sheet_xml.decode("utf-8"), self.values).encode("utf-8")


@dataclass(frozen=True)
class PatternRows:
    """Rows `first_row`..`last_row` of one sheet, written as XML from one pattern per row.

    The row above `first_row` is the template: openpyxl wrote it (with the same columns), and its
    cells' style ids are reused. Each cell pattern is the inner XML of a cell with {r} (this
    row), {p} (the row above), {k} (the iteration), {s} (the iteration's row on an LR sheet) and
    {v[i]} (column i of `values`, the row's cached values). `top` fills the values of the
    formulas openpyxl wrote above the bulk; `row_of_iteration_0` is where {s} counts from.
    """

    title: str
    first_row: int
    last_row: int
    first_iteration: int  # the iteration of first_row
    cells: tuple[tuple[str, str], ...]  # (column letter, inner XML pattern)
    values: np.ndarray | None = None  # (last_row - first_row + 1, valued cells)
    top: Mapping[str, float | str] = field(default_factory=dict)
    row_of_iteration_0: int = 0

    def rows(self, sheet_xml: str) -> Iterator[str]:
        """The sheet's XML, with the bulk rows after the template row."""
        end = sheet_xml.rindex("</sheetData>")
        head, tail = fill_values(sheet_xml[:end], self.top), sheet_xml[end:]
        template = head[head.rfind("<row ") :]
        number = re.match(r'<row r="(\d+)"', template)
        if not number or int(number.group(1)) != self.first_row - 1 or "</row>" not in template:
            raise AssertionError(f"{self.title}: row {self.first_row - 1} must be the last row")
        styles = dict(re.findall(r'<c r="([A-Z]+)\d+" s="(\d+)"', template))
        row_pattern = (
            '<row r="{r}">'
            + "".join(
                f'<c r="{letter}{{r}}"'
                + (f' s="{styles[letter]}"' if letter in styles else "")
                + f">{inner}</c>"
                for letter, inner in self.cells
            )
            + "</row>"
        )
        last_column = self.cells[-1][0]
        yield re.sub(
            r'<dimension ref="[^"]*"\s*/>',
            f'<dimension ref="A1:{last_column}{self.last_row}"/>',
            head,
            count=1,
        )
        offset = self.first_iteration - self.first_row
        for start in range(self.first_row, self.last_row + 1, CHUNK_ROWS):
            stop = min(start + CHUNK_ROWS, self.last_row + 1)
            if self.values is None:
                values: list = [()] * (stop - start)
            else:  # floats, formatted by str.format in C: str(x) is the shortest round-trip text
                chunk = self.values[start - self.first_row : stop - self.first_row]
                values = chunk.tolist()
                if not np.isfinite(chunk).all():  # only in a run the overflow check refuses
                    values = [[x if math.isfinite(x) else "" for x in row] for row in values]
            yield "".join(
                row_pattern.format(
                    r=r, p=r - 1, k=r + offset, s=self.row_of_iteration_0 + r + offset, v=v
                )
                for r, v in zip(range(start, stop), values, strict=True)
            )
        yield tail

    def stream(self, sheet_xml: bytes) -> Iterator[bytes]:
        """`rows` as the bytes of the sheet's part."""
        for part in self.rows(sheet_xml.decode("utf-8")):
            yield part.encode("utf-8")
