"""Read an xlsx package safely: sheet titles to parts, shared strings, cells in one streaming pass.

Every workbook is untrusted. Each XML part is parsed by `safe_parser` (no entities, no DTD, no
network) after `check_prolog` has refused any DOCTYPE outright, so no lxml version the dependency
range admits can read a local file or expand entities; each part is read through `_Part`,
which counts what it inflates (a part may say it is small) and refuses past `MAX_PART_BYTES`,
and more than `MAX_ROW_BYTES` of XML between two rows; a sheet stops at the end of
<sheetData>. Row and column numbers, cell text and shared strings are bounded as in Excel.

lxml, not openpyxl: one streaming pass gives each cell's formula and cached value, measured at
1.6 s CPU per 10,001-row sheet against 4.5 s for the two openpyxl loads (formulas, values) it
replaces; regular expressions over the XML were no faster. `grid` reads a row of plain cells
with four compiled XPath queries instead of a Python loop over its cells; measured on a
10,001-row LibreOffice-saved LR sheet: 1.2 s against 2.4 s for the per-cell loop (`rows`).
"""

from __future__ import annotations

import posixpath
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, NamedTuple

from lxml import etree
from openpyxl.utils import get_column_letter

from .errors import BpxlError
from .formula import MAX_COLUMN, Template, Token, Unsupported, column_number, template, tokenize

NS_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
NS_R = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
NS_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
_C, _F, _V, _IS, _T, _R, _ROW, _SI, _SHEET, _SHEET_DATA = (
    f"{{{NS_MAIN}}}{t}" for t in ("c", "f", "v", "is", "t", "r", "row", "si", "sheet", "sheetData")
)

# Bounds on what a file can inflate. Excel's own limits where it has them.
MAX_ROW = 1_048_576
MAX_CELL_TEXT = 32_767  # characters in a cell (its value, text or formula)
MAX_PART_BYTES = 1_000_000_000  # inflated size of one part; a 100,000-step LR sheet is ~330 MB
MAX_ROW_BYTES = 16 << 20  # XML of one row (or between two rows); a bpxl row is ~3 KB
_PROLOG_PEEK = 1 << 16  # bytes searched for the root element
_ROW_NUMBER = re.compile(r"[1-9][0-9]{0,11}")  # up to 12 digits, to say which row
_CELL_REF = re.compile(r"([A-Za-z]{1,3})[1-9][0-9]{0,6}")


# ---------------------------------------------------------------------------------------------
# Safe XML: one parser configuration, one prolog check, bounded parts (shared with package.py)


def safe_parser() -> etree.XMLParser:
    """An lxml parser that expands no entity, loads no DTD and touches no network.

    Explicit on every option, because the defaults changed between lxml 4.9 and 6 (4.9 and
    6.0.2 resolve external entities in `iterparse` by default). libxml2's own limits stay on
    (no huge_tree): a text node over 10 MB is a syntax error, not gigabytes.
    """
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


_PARSER_OPTIONS = {"resolve_entities": False, "no_network": True, "load_dtd": False}
_MISC = re.compile(r"(?:\s+|<\?.*?\?>|<!--.*?-->)*", re.S)  # what may come before the root
_ENCODING = re.compile(r"""\A<\?xml[^>]*?\bencoding\s*=\s*["']([^"']*)["']""")
_ENCODINGS = {"utf-8", "utf8", "utf-16", "utf16", "us-ascii", "ascii"}


def check_prolog(head: bytes, where: str) -> None:
    """Refuse a part whose root element is preceded by a DOCTYPE, or by anything but the XML
    declaration, comments and processing instructions, or that is not UTF-8 or UTF-16.

    `head` is the start of the part (at least `_PROLOG_PEEK` bytes, or all of it). Done before
    the parser sees the part, so a DTD is never parsed at all.
    """
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = head[2 : len(head) & ~1].decode("utf-16-le" if head[0] == 0xFF else "utf-16-be")
    else:
        text = head.removeprefix(b"\xef\xbb\xbf").decode("latin-1")
    declared = _ENCODING.match(text)
    if declared and declared[1].lower() not in _ENCODINGS:
        raise BpxlError(f"{where}: XML in encoding {declared[1]!r} (a workbook's is UTF-8 or -16)")
    end = _MISC.match(text).end()
    if text.startswith("<!", end):
        raise BpxlError(f"{where}: has a DOCTYPE (DTDs and entities are refused in a workbook)")
    if end == len(text):
        if len(head) >= _PROLOG_PEEK:
            raise BpxlError(f"{where}: no root element in its first {_PROLOG_PEEK:,} bytes")
        return  # empty or truncated: the parser says so
    if not re.match(r"<[^\W\d]", text[end:]):
        raise BpxlError(f"{where}: not XML (unexpected text before the root element)")


def _refuse_dtd(root: etree._Element, where: str) -> None:
    """The parser's own view, after the prolog check: a document must have no DOCTYPE."""
    if root.getroottree().docinfo.doctype:
        raise BpxlError(f"{where}: has a DOCTYPE (DTDs and entities are refused in a workbook)")


class _Part:
    """A zip member as a file for lxml: counts the bytes it inflates and refuses past `limit`,
    or past `window` bytes since the reader last called `mark()` (between two rows)."""

    def __init__(
        self, zf: zipfile.ZipFile, name: str, where: str, limit: int, window: int | None = None
    ) -> None:
        info = zf.getinfo(name)
        self.where = where
        self.limit = limit
        self.window = limit if window is None else window
        if info.file_size > limit:
            raise _too_big(where, info.file_size, limit)
        self.fh: IO[bytes] = zf.open(info)
        self.count = 0
        self.since = 0
        head = self.fh.read(_PROLOG_PEEK)
        self._count(len(head))
        check_prolog(head, where)
        self.head = head

    def _count(self, n: int) -> None:
        self.count += n
        if self.count > self.limit:
            raise _too_big(self.where, self.count, self.limit, "at least ")
        if self.count - self.since > self.window:
            raise BpxlError(f"{self.where}: more than {self.window:,} bytes of XML in one row")

    def mark(self) -> None:
        self.since = self.count

    def read(self, n: int = -1) -> bytes:
        if self.head:
            data, self.head = self.head, b""
            return data
        data = self.fh.read(n if n is not None and n > 0 else 1 << 16)
        self._count(len(data))
        return data

    def close(self) -> None:
        self.fh.close()


def _too_big(where: str, size: int, limit: int, qualifier: str = "") -> BpxlError:
    return BpxlError(
        f"{where}: {qualifier}{size:,} bytes uncompressed, more than the {limit:,} a part may hold"
    )


def read_part(zf: zipfile.ZipFile, name: str, where: str, limit: int = MAX_PART_BYTES) -> bytes:
    """The bytes of a part, read with a counting limit (the zip header's size is not trusted)."""
    part = _Part(zf, name, where, limit)
    try:
        chunks = [part.read()]
        while chunks[-1]:
            chunks.append(part.read(1 << 20))
        return b"".join(chunks)
    finally:
        part.close()


def parse_xml(data: bytes, where: str) -> etree._Element:
    """A whole part parsed safely: the prolog checked, then `safe_parser`, then no DOCTYPE."""
    check_prolog(data[:_PROLOG_PEEK], where)
    root = etree.fromstring(data, safe_parser())
    _refuse_dtd(root, where)
    return root


# ---------------------------------------------------------------------------------------------
# Parts and relationships (shared with writer.py and package.py)


def rels_name(part: str) -> str:
    """The part holding `part`'s relationships; "" (the package itself) gives _rels/.rels."""
    folder, base = posixpath.split(part)
    return posixpath.join(folder, "_rels", f"{base}.rels")


def resolve_target(source_part: str, target: str) -> str:
    """The part a relationship target names: absolute, or relative to the source's folder."""
    if target.startswith("/"):
        return posixpath.normpath(target.lstrip("/"))
    return posixpath.normpath(posixpath.join(posixpath.dirname(source_part), target))


_SMALL_PART = 64 << 20  # workbook.xml and relationships are parsed whole: kilobytes in practice


def _xml(zf: zipfile.ZipFile, name: str) -> etree._Element:
    where = f"part {name}"
    return parse_xml(read_part(zf, name, where, _SMALL_PART), where)


def part_rels(zf: zipfile.ZipFile, part: str) -> dict[str, tuple[str, str]]:
    """Relationship id → (type, part name) of `part`; {} when it has no relationships."""
    name = rels_name(part)
    if name not in zf.NameToInfo:
        return {}
    return {
        rel.get("Id"): (rel.get("Type", ""), resolve_target(part, rel.get("Target", "")))
        for rel in _xml(zf, name).iter(f"{{{NS_PKG_REL}}}Relationship")
    }


def sheet_parts(zf: zipfile.ZipFile) -> tuple[str, dict[str, str]]:
    """The workbook part, and sheet title → part of each worksheet, in workbook order.

    Read from the package's relationships, xl/workbook.xml and its relationships: part names
    are not fixed (LibreOffice and Excel name them differently). KeyError if there is no
    workbook part.
    """
    workbook = next(
        (name for kind, name in part_rels(zf, "").values() if kind.endswith("/officeDocument")),
        "xl/workbook.xml",
    )
    if workbook not in zf.NameToInfo:
        raise KeyError("no workbook part")
    rels = part_rels(zf, workbook)
    parts = {}
    for sheet in _xml(zf, workbook).iter(_SHEET):
        rid = sheet.get(f"{{{NS_R}}}id")
        if rid in rels and rels[rid][0].endswith("/worksheet") and rels[rid][1] in zf.NameToInfo:
            parts[sheet.get("name") or ""] = rels[rid][1]
    return workbook, parts


# ---------------------------------------------------------------------------------------------
# Cells


class Cell(NamedTuple):
    formula: str | None
    value: str | None  # text of the cached value (shared strings resolved); None if none
    type: str  # the cell's t attribute: "n", "s", "str", "b", "e", "inlineStr"


class GridRow(NamedTuple):
    """One row of a sheet's first `width` columns, as `Package.grid` gives it."""

    row: int
    formulas: list[str | None]  # [column − 1]
    values: list[str | None]  # cached values as text (shared strings resolved)
    types: list[str | None] | None  # None: every cell present, type "n"; else None = no cell


_NS = {"m": NS_MAIN}
_PLAIN_CELLS = etree.XPath(
    "count(m:c[@r][not(@t) or @t='n'][count(*)=2]"
    "[m:f[not(@t) or @t='normal'][count(node())=1][text()]]"
    "[m:v[count(node())=1][text()]])",
    namespaces=_NS,
)
_ALL_CELLS = etree.XPath("count(*)", namespaces=_NS)
_REFS = etree.XPath("m:c/@r", namespaces=_NS, smart_strings=False)
_FORMULAS = etree.XPath("m:c/m:f/text()", namespaces=_NS, smart_strings=False)
_VALUES = etree.XPath("m:c/m:v/text()", namespaces=_NS, smart_strings=False)


class Package:
    """An xlsx file opened for reading: sheet titles, their XML parts, the shared strings.

    Every failure to read is a BpxlError naming the file and the reason, in one line.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise BpxlError(f"cannot read {path}: no such file")
        if not self.path.is_file():
            raise BpxlError(f"cannot read {path}: not a file")
        try:
            self.zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError):
            raise BpxlError(
                f"cannot read {path}: not an xlsx workbook (not a zip package)"
            ) from None
        except OSError as exc:
            raise BpxlError(f"cannot read {path}: {exc.strerror or exc}") from None
        try:
            self.workbook, self.parts = sheet_parts(self.zip)
            self.strings = self._shared_strings()
        except BpxlError as exc:
            self.zip.close()
            raise BpxlError(f"cannot read {path}: {exc}") from None
        except (KeyError, etree.XMLSyntaxError, zipfile.BadZipFile, OSError, EOFError) as exc:
            self.zip.close()
            raise BpxlError(f"cannot read {path}: not an xlsx workbook ({exc})") from None
        self.titles = {t.casefold(): t for t in self.parts}

    def close(self) -> None:
        self.zip.close()

    def _shared_strings(self) -> list[str]:
        """The shared-string table, streamed: memory follows the strings, not a parsed tree."""
        for kind, name in part_rels(self.zip, self.workbook).values():
            if kind.endswith("/sharedStrings") and name in self.zip.NameToInfo:
                strings = []
                for _, item, _ in self._stream(name, f"part {name}", (_SI,)):
                    text = _string_item(item)
                    if len(text) > MAX_CELL_TEXT:
                        raise BpxlError(
                            f"shared string {len(strings)} has {len(text):,} characters, "
                            f"more than a cell can hold ({MAX_CELL_TEXT:,})"
                        )
                    strings.append(text)
                return strings
        return []

    def _where(self, title: str) -> str:
        return f"cannot read {self.path}: sheet {title!r}"

    def _stream(
        self, name: str, where: str, tags: tuple[str, ...]
    ) -> Iterator[tuple[str, etree._Element, _Part]]:
        """(tag, element, part) at the end of each element named in `tags`, the elements before
        it removed; stops at the end of <sheetData> (nothing after it is read)."""
        part = _Part(self.zip, name, where, MAX_PART_BYTES, MAX_ROW_BYTES)
        try:
            events = etree.iterparse(
                part, events=("end",), tag=(*tags, _SHEET_DATA), **_PARSER_OPTIONS
            )
            first = True
            for _, el in events:
                if first:  # the prolog was checked; check the parser's view once too
                    _refuse_dtd(el, where)
                    first = False
                if el.tag == _SHEET_DATA:
                    break
                yield el.tag, el, part
                part.mark()
                el.clear()
                while el.getprevious() is not None:
                    del el.getparent()[0]
        finally:
            part.close()

    def _sheet(self, title: str) -> Iterator[tuple[int, etree._Element]]:
        """(row number, row element) of a sheet, row numbers checked: 1 to MAX_ROW, ascending."""
        where = self._where(title)
        row = 0
        for _, row_el, _ in self._stream(self.parts[title], where, (_ROW,)):
            number = row_el.get("r")
            if number is None:
                number = row + 1
            elif _ROW_NUMBER.fullmatch(number):
                number = int(number)
            else:
                raise BpxlError(f"{where}: row number {_clip(number)!r} is not a number")
            if number > MAX_ROW:
                raise BpxlError(f"{where}: row {number:,} is past Excel's last row {MAX_ROW:,}")
            if number <= row:
                raise BpxlError(f"{where}: row {number:,} comes after row {row:,}")
            row = number
            yield row, row_el

    def rows(self, title: str, width: int = MAX_COLUMN) -> Iterator[tuple[int, list]]:
        """(row, [(column, cell), …]) of a sheet in one streaming pass, shared formulas expanded;
        cells right of column `width` are left out."""
        shared: dict[str, tuple[list[Token] | str, dict[int, Template]]] = {}
        for row, row_el in self._sheet(title):
            yield row, self._cells(row_el, row, title, width, shared)

    def grid(self, title: str, width: int) -> Iterator[GridRow]:
        """The first `width` columns of every row of a sheet. A row of `width` plain cells (a
        formula and a number each, as LibreOffice and Excel save an LR sheet) is read in C by
        XPath; any other row cell by cell, exactly as `rows` reads it."""
        shared: dict[str, tuple[list[Token] | str, dict[int, Template]]] = {}
        letters = [get_column_letter(c) for c in range(1, width + 1)]
        for row, row_el in self._sheet(title):
            if _ALL_CELLS(row_el) == width and _PLAIN_CELLS(row_el) == width:
                suffix = str(row)
                if _REFS(row_el) == [x + suffix for x in letters]:
                    formulas, values = _FORMULAS(row_el), _VALUES(row_el)
                    if max(map(len, formulas)) > MAX_CELL_TEXT:
                        raise BpxlError(_long_text(self._where(title), row, formulas))
                    if max(map(len, values)) > MAX_CELL_TEXT:
                        raise BpxlError(_long_text(self._where(title), row, values))
                    yield GridRow(row, formulas, values, None)
                    continue
            formulas = [None] * width
            values = [None] * width
            types: list[str | None] = [None] * width
            for col, cell in self._cells(row_el, row, title, width, shared):
                formulas[col - 1], values[col - 1], types[col - 1] = cell
            yield GridRow(row, formulas, values, types)

    def _cells(
        self, row_el: etree._Element, row: int, title: str, width: int, shared: dict
    ) -> list[tuple[int, Cell]]:
        """The cells of one row element, cell by cell."""
        col = 0
        cells = []
        for c in row_el:
            if c.tag != _C:
                continue
            ref = c.get("r")
            if ref is None:
                col += 1
            else:
                m = _CELL_REF.fullmatch(ref)
                col = column_number(m[1]) if m else MAX_COLUMN + 1
                if m is None or col > MAX_COLUMN:
                    raise BpxlError(
                        f"{self._where(title)}: {_clip(ref)!r} is not a cell of a sheet"
                    )
            if col > MAX_COLUMN:
                raise BpxlError(f"{self._where(title)}: row {row:,} has over {MAX_COLUMN:,} cells")
            if col > width:
                continue
            kind = c.get("t") or "n"
            formula = value = None
            for child in c:
                tag = child.tag
                if tag == _V:
                    value = child.text or None
                elif tag == _F:
                    formula = child.text or None
                    if child.get("t") == "shared":
                        formula = self._shared(formula, child.get("si"), row, col, title, shared)
                elif tag == _IS:
                    value = _string_item(child)
            for text in (formula, value):
                if text is not None and len(text) > MAX_CELL_TEXT:
                    raise BpxlError(_long_text(self._where(title), row, [text], col))
            if kind == "s" and value is not None:
                value = _shared_string(self.strings, value)
            cells.append((col, Cell(formula, value, kind)))
        return cells

    def cells(self, title: str, width: int = MAX_COLUMN) -> dict[tuple[int, int], Cell]:
        """Every cell of a sheet by (row, column), for the small sheets read whole."""
        return {(row, col): cell for row, cells in self.rows(title, width) for col, cell in cells}

    def _shared(self, text: str | None, si: str | None, row: int, col: int, title: str, shared):  # type: ignore[no-untyped-def]
        """Excel's shared formulas: the master holds the text, the others are its copies.

        A master the tokenizer refuses (too long) is copied as written, so that each copy is
        reported by the formula check instead of looking like a typed-in value."""
        if si is None:
            return text
        if text is not None:  # the master
            try:
                shared[si] = (tokenize(text, row, col, title, self.titles), {})
            except Unsupported:
                shared[si] = (text, {})
            return text
        if si not in shared:
            return None
        tokens, templates = shared[si]
        if isinstance(tokens, str):
            return tokens
        if col not in templates:
            templates[col] = template(tokens, col)
        return templates[col].render(row)


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _long_text(where: str, row: int, texts: list[str], col: int | None = None) -> str:
    longest = max(texts, key=len)
    cell = f"row {row:,}" if col is None else f"{get_column_letter(col)}{row}"
    return (
        f"{where}: a cell of {cell} holds {len(longest):,} characters, more than a cell can "
        f"({MAX_CELL_TEXT:,})"
    )


def _string_item(item: etree._Element) -> str:
    """The text of a string item (<si> or <is>): its <t>, or the <t> of each rich-text run <r>.

    Only the <t> elements' own text counts: the whitespace between elements of a pretty-printed
    file (Gnumeric writes one) is not part of the string, and phonetic runs (<rPh>) are not shown.
    """
    texts = []
    for child in item:
        if child.tag == _T:
            texts.append(child.text or "")
        elif child.tag == _R:
            texts += [t.text or "" for t in child.iter(_T)]
    return "".join(texts)


def _shared_string(strings: list[str], index: str) -> str | None:
    """The text of a shared-string cell; None (no value) for an index the table lacks."""
    try:
        return strings[int(index)]
    except (ValueError, IndexError):
        return None


def cell_number(cell: Cell | None) -> float | None:
    """The cell's cached value as a float, or None if it has none or is not a number."""
    if cell is None or cell.value is None or cell.type not in ("n", ""):
        return None
    try:
        return float(cell.value)
    except ValueError:
        return None
