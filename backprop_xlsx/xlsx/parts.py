"""Safe XML and the package's structure: one hardened parser, bounded parts, relationships.

Every workbook is untrusted. Each XML part is parsed by `safe_parser` (no entities, no DTD, no
network) after `check_prolog` has refused any DOCTYPE outright, so no lxml version the dependency
range admits can read a local file or expand entities; each part is read through `BoundedPart`,
which counts what it inflates (a part may say it is small) and refuses past `MAX_PART_BYTES`;
each file is opened by `open_zip`. Reading (read.py), editing (package.py) and streaming
(stream.py) all go through here, so none keeps its own parser, bounds or errors.
"""

from __future__ import annotations

import posixpath
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from lxml import etree

from backprop_xlsx.errors import BpxlError

NS_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
NS_R = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
NS_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
NS_STRICT = "http://purl.oclc.org/ooxml/spreadsheetml/main"
_SHEET = f"{{{NS_MAIN}}}sheet"

# Bounds on what a file can inflate. Excel's own limits where it has them.
MAX_ROW = 1_048_576
MAX_CELL_TEXT = 32_767  # characters in a cell (its value, text or formula)
MAX_PART_BYTES = 1_000_000_000  # inflated size of one part; a 100,000-step LR sheet is ~330 MB
MAX_ROW_BYTES = 16 << 20  # XML of one row (or between two rows); a bpxl row is ~3 KB
_PROLOG_PEEK = 1 << 16  # bytes searched for the root element


# ---------------------------------------------------------------------------------------------
# Safe XML: one parser configuration, one prolog check, bounded parts (shared with package.py)


def safe_parser() -> etree.XMLParser:
    """An lxml parser that expands no entity, loads no DTD and touches no network.

    Explicit on every option, because the defaults changed between lxml 4.9 and 6 (4.9 and
    6.0.2 resolve external entities in `iterparse` by default). libxml2's own limits stay on
    (no huge_tree): a text node over 10 MB is a syntax error, not gigabytes.
    """
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


PARSER_OPTIONS = {"resolve_entities": False, "no_network": True, "load_dtd": False}
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


def refuse_dtd(root: etree._Element, where: str) -> None:
    """The parser's own view, after the prolog check: a document must have no DOCTYPE."""
    if root.getroottree().docinfo.doctype:
        raise BpxlError(f"{where}: has a DOCTYPE (DTDs and entities are refused in a workbook)")


class BoundedPart:
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
    part = BoundedPart(zf, name, where, limit)
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
    refuse_dtd(root, where)
    return root


# ---------------------------------------------------------------------------------------------
# Parts and relationships


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


class DuplicateSheetNames(BpxlError):
    """Two sheets of one workbook share a name; `reason` says which, without the file's name."""

    def __init__(self, reason: str, where: str = "") -> None:
        super().__init__(f"{where}: {reason}" if where else reason)
        self.reason = reason


def check_sheet_names(names: Iterable[str]) -> None:
    """BpxlError if two sheets share a name, ignoring case as Excel does.

    Excel refuses such a file as damaged, and every reader by name sees only one of the two:
    a rebuild that replaces one would drop both, and a check would check one.
    """
    seen: dict[str, str] = {}
    for name in names:
        other = seen.get(name.casefold())
        seen[name.casefold()] = name
        if other is not None:
            same = f"sheets {other!r} and {name!r}"
            if other == name:
                same = f"two sheets named {name!r}"
            raise DuplicateSheetNames(
                f"{same}: sheet names must differ (ignoring case, as in Excel), so the workbook "
                "is damaged; rename one of them in a spreadsheet program"
            )


def sheet_parts(zf: zipfile.ZipFile) -> tuple[str, list[str], dict[str, str]]:
    """The workbook part, every sheet's title (chartsheets too) and title → part of each
    worksheet, in workbook order.

    Read from the package's relationships, xl/workbook.xml and its relationships: part names
    are not fixed (LibreOffice and Excel name them differently). KeyError if there is no
    workbook part; BpxlError for a Strict OOXML one (its names are not SpreadsheetML's: read
    as one, it would seem to have no sheets).
    """
    workbook = next(
        (name for kind, name in part_rels(zf, "").values() if kind.endswith("/officeDocument")),
        "xl/workbook.xml",
    )
    if workbook not in zf.NameToInfo:
        raise KeyError("no workbook part")
    root = _xml(zf, workbook)
    if root.tag == f"{{{NS_STRICT}}}workbook":
        raise BpxlError("Strict OOXML is not supported")
    rels = part_rels(zf, workbook)
    parts = {}
    sheets = list(root.iter(_SHEET))
    titles = [sheet.get("name") or "" for sheet in sheets]
    check_sheet_names(titles)
    for title, sheet in zip(titles, sheets, strict=True):
        rid = sheet.get(f"{{{NS_R}}}id")
        if rid in rels and rels[rid][0].endswith("/worksheet") and rels[rid][1] in zf.NameToInfo:
            parts[title] = rels[rid][1]
    return workbook, titles, parts


def open_zip(path: Path, where: str) -> zipfile.ZipFile:
    """The zip of the package at `path`, or one BpxlError line starting `where`: no such file,
    not a file, not a zip package, or the system's reason. Every reader opens a file here."""
    if not path.exists():
        raise BpxlError(f"{where}: no such file")
    if not path.is_file():
        raise BpxlError(f"{where}: not a file")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError):
        raise BpxlError(f"{where}: not an xlsx workbook (not a zip package)") from None
    except OSError as exc:
        raise BpxlError(f"{where}: {exc.strerror or exc}") from None
