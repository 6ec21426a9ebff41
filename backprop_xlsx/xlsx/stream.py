"""Many plain cells streamed into the sheets openpyxl saved, instead of through openpyxl.

openpyxl writes what a person sees once (titles, headers, charts, one cell of each style); at
~60 µs per styled cell it is far too slow for the bulk (an LR sheet has millions of cells).
`FilledSheet` takes the XML openpyxl saved for a sheet, puts NumPy's cached values into its
empty formula cells, and lets a subclass add the bulk in the style ids of a template cell:
`PatternRows`, rows from one pattern each, streamed in chunks (the LR sheets, the E_total
table), or `Bulk`, cells placed anywhere (the trained net's sheets). openpyxl's XML, of one known
form, is edited as text by anchored patterns, not parsed: a parse and re-serialisation of every
sheet is the cost the streaming exists to avoid. `LETTERS` is the one column-letter table.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import chain
from xml.sax.saxutils import escape

import numpy as np
from lxml import etree
from openpyxl.utils import get_column_letter
from openpyxl.utils.cell import coordinate_from_string, coordinate_to_tuple

from backprop_xlsx.xlsx.parts import NS_MAIN, safe_parser

LETTERS = ["", *(get_column_letter(c) for c in range(1, 16385))]  # column → letters: ~20 M lookups
_C = f"{{{NS_MAIN}}}c"
_STYLED = re.compile(r'<c r="([A-Z]+[0-9]+)" s="([0-9]+)"')  # openpyxl writes r, then s


def number_text(value: float | int) -> str:
    """A cell's number as stored: a whole number as is, any other as the shortest text that reads
    back as the same double, `repr(float(x))`, whatever type (and NumPy release) it came from."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return str(int(value))
    return repr(float(value))


_EMPTY_VALUE = re.compile(
    r'(<c r="([A-Z]+[0-9]+)"[^>]*?)(\s*t="[^"]*")?(\s*>(?:<f[^>]*>.*?</f>|<f[^>]*/>))<v></v>'
)


def fill_values(xml: str, values: Mapping[str, float | str]) -> str:
    """Put a value into the empty <v></v> openpyxl writes after each formula of `values`; a
    number as the shortest text that reads back as the same double (a whole one too: 3.0)."""
    if not values:
        return xml

    def fill(m: re.Match[str]) -> str:
        value = values.get(m[2])
        if value is None or (not isinstance(value, str) and not math.isfinite(value)):
            return m[0]
        if isinstance(value, str):  # a formula whose result is text
            return f'{m[1]} t="str"{m[4]}<v>{escape(value)}</v>'
        return f"{m[1]}{m[3] or ''}{m[4]}<v>{float(value)!r}</v>"

    return _EMPTY_VALUE.sub(fill, xml)


def _split(sheet_xml: str) -> tuple[str, str, str]:
    """A sheet's XML as (all up to and with <sheetData>, its rows, </sheetData> and the rest)."""
    start = sheet_xml.index("<sheetData")
    opened = sheet_xml.index(">", start) + 1
    if sheet_xml[opened - 2] == "/":  # an empty <sheetData/>
        return sheet_xml[:start] + "<sheetData>", "", "</sheetData>" + sheet_xml[opened:]
    end = sheet_xml.rindex("</sheetData>")
    return sheet_xml[:opened], sheet_xml[opened:end], sheet_xml[end:]


class FilledSheet:
    """A sheet openpyxl wrote, its formula cells given cached values (`top`: cell → value).

    The base of the bulk streamers: a subclass's `_rows` turns openpyxl's rows into the sheet's
    rows and says the sheet's new dimension (its used range)."""

    def __init__(self, top: Mapping[str, float | str] | None = None) -> None:
        self.top = {} if top is None else top

    def stream(self, sheet_xml: bytes) -> Iterator[bytes]:
        """The sheet's part, in chunks of bytes."""
        before, rows, after = _split(sheet_xml.decode("utf-8"))
        dimension, body = self._rows(fill_values(rows, self.top))
        if dimension is not None:
            before = re.sub(
                r'<dimension ref="[^"]*"\s*/>', f'<dimension ref="{dimension}"/>', before, count=1
            )
        yield before.encode("utf-8")
        for chunk in body:
            yield chunk.encode("utf-8")
        yield after.encode("utf-8")

    def _rows(self, rows: str) -> tuple[str | None, Iterable[str]]:
        """(the sheet's dimension, None to keep openpyxl's; the rows of the sheet, in chunks)."""
        return None, (rows,)


class Bulk(FilledSheet):
    """The bulk cells of one sheet: row → [(column, cell XML)], each style named by a key.

    `prototype[key]` is the (row, column) of a cell openpyxl wrote with that style; its style id
    is read from the saved XML, so the bulk cells look exactly like it.
    """

    def __init__(self, title: str) -> None:
        super().__init__()
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

    def _rows(self, rows: str) -> tuple[str | None, Iterable[str]]:
        """openpyxl's rows and the bulk cells merged, in row and column order."""
        styled = dict(_STYLED.findall(rows))
        styles = {
            key: styled.get(f"{LETTERS[c]}{r}", "0") for key, (r, c) in self.prototype.items()
        }
        data = etree.fromstring(  # openpyxl's own output, parsed safely all the same
            f'<sheetData xmlns="{NS_MAIN}">{rows}</sheetData>', safe_parser()
        )
        existing: dict[int, tuple[dict[str, str], list[tuple[int, str]]]] = {}
        for row_el in data:
            attrs = {k: v for k, v in row_el.attrib.items() if k not in ("r", "spans")}
            cells = [
                (
                    coordinate_to_tuple(c.get("r"))[1],
                    etree.tostring(c, encoding="unicode").replace(f' xmlns="{NS_MAIN}"', ""),
                )
                for c in row_el.iter(_C)
            ]
            existing[int(row_el.get("r"))] = (attrs, cells)
        seen = {(r, c) for r, (_, cells) in existing.items() for c, _ in cells}
        missing = [key for key, at in self.prototype.items() if at not in seen]
        if missing:
            raise AssertionError(f"{self.title}: no prototype cell for styles {sorted(missing)}")
        out = []
        last_col = 1
        for r in sorted(set(existing) | set(self.rows)):
            attrs, cells = existing.get(r, ({}, []))
            merged = sorted(cells + self.rows.get(r, []), key=lambda item: item[0])
            if merged:
                last_col = max(last_col, merged[-1][0])
            extra = "".join(f' {k}="{escape(v, {chr(34): "&quot;"})}"' for k, v in attrs.items())
            out.append(f'<row r="{r}"{extra}>{"".join(xml for _, xml in merged)}</row>')
        body = re.sub("\0([^\0]*)\0", lambda m: f' s="{styles[m.group(1)]}"', "".join(out))
        last_row = max(set(existing) | set(self.rows), default=1)
        return f"A1:{LETTERS[last_col]}{last_row}", (body,)


CHUNK_ROWS = 2000  # rows formatted per string join: bounded memory, few calls


@dataclass(frozen=True)
class PatternRows(FilledSheet):
    """Rows `first_row`..`last_row` of one sheet, written as XML from one pattern per row.

    The row above `first_row` is the template: openpyxl wrote it (with the same columns), and its
    cells' style ids are reused. Each cell pattern is the inner XML of a cell with {r} (this
    row), {p} (the row above), {k} (a count: `first_k` on first_row, one more each row), {s}
    (k + `s_offset`: the row of the same count on another sheet) and {v[i]} (column i of
    `values`, the row's cached values). `top` fills the values of the formulas openpyxl wrote
    above the bulk.
    """

    title: str
    first_row: int
    last_row: int
    first_k: int  # {k} on first_row
    cells: tuple[tuple[str, str], ...]  # (column letter, inner XML pattern)
    values: np.ndarray | None = None  # (last_row - first_row + 1, valued cells)
    top: Mapping[str, float | str] = field(default_factory=dict)
    s_offset: int = 0  # {s} = {k} + s_offset

    def _rows(self, rows: str) -> tuple[str, Iterable[str]]:
        """openpyxl's rows, then the bulk rows after the template row (its last)."""
        template = rows[rows.rfind("<row ") :]
        number = re.match(r'<row r="(\d+)"', template)
        if not number or int(number.group(1)) != self.first_row - 1 or "</row>" not in template:
            raise AssertionError(f"{self.title}: row {self.first_row - 1} must be the last row")
        styles = {coordinate_from_string(ref)[0]: s for ref, s in _STYLED.findall(template)}
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
        return f"A1:{self.cells[-1][0]}{self.last_row}", chain((rows,), self._bulk(row_pattern))

    def _bulk(self, row_pattern: str) -> Iterator[str]:
        offset = self.first_k - self.first_row
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
                row_pattern.format(r=r, p=r - 1, k=r + offset, s=self.s_offset + r + offset, v=v)
                for r, v in zip(range(start, stop), values, strict=True)
            )
