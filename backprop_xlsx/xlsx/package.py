"""Move worksheets between xlsx packages at the zip/XML level, leaving everything else untouched.

Why not openpyxl: loading and saving a workbook with openpyxl drops every cached formula value and
rewrites (and sometimes alters) charts, so a workbook recalculated by LibreOffice or Excel would
lose exactly what makes it checkable. Here the destination package is edited part by part: the
moved sheet's XML and the parts it relates to (drawings, charts, chart styles/colours, images,
comments, ...) are copied under fresh part names, and only the shared bookkeeping parts change:

* ``xl/workbook.xml`` (``<sheet>`` entry, sheet-local defined names such as print areas),
* ``xl/_rels/workbook.xml.rels``, ``[Content_Types].xml``,
* ``xl/styles.xml`` (cell formats the moved sheet needs are appended or reused),
* ``xl/calcChain.xml`` is dropped when a sheet is replaced (Excel rebuilds it; stale entries
  would make Excel "repair" the file).

Every other part of the destination stays byte-for-byte identical, including cached values.

Streaming: a package is read part by part from its zip, only the bookkeeping parts and the moved
sheets are ever parsed or held, and writing copies every other part member by member
(``shutil.copyfileobj``), from the destination's zip or, for a moved sheet's charts and images,
from the source's. A rebuild of a 1 × 100,000-step workbook with one user sheet so costs what a
fresh build costs in peak memory (1.00×, ``benchmarks/bench_rebuild.py``), where reading both
packages whole (c19646c) took 9× (669 MB against 74 MB) and 2.6× the time. Zip members whose
names are absolute or contain ``..`` are never read nor copied, and a relationship that points
outside the package stops the move.

A rebuild (``build_package``) also carries the source's workbook-level defined names and its
theme over, and warns about formulas, chart ranges and defined names it carries that refer to
sheets the rebuild removes.

Theme: charts and cell formats may leave colours to the workbook's theme (openpyxl's charts do).
A destination without a theme part (LibreOffice writes none) gets a copy of the source's theme,
so the moved sheets resolve those colours as they did in the source; a destination with its own
theme keeps it, as when Excel copies a sheet between workbooks.

Choices and limits:

* Shared strings of the moved sheet become inline strings (``t="inlineStr"``), so the
  destination's ``sharedStrings.xml`` is never touched.
* Cell formats keep number format, font, fill, border, alignment and protection, and their named
  cell style (``xfId``): one the destination has by the same name (Normal, Hyperlink) is used,
  any other is added. Cells without a format (index 0) use the destination's default format.
  Conditional-format ``dxf`` entries are copied.
* ``docProps/app.xml`` (the sheet-title list some tools show) is left as it is; Excel and
  LibreOffice ignore a stale list.
* Sheet names match case-insensitively, as in Excel: a same-named sheet is replaced in place
  (same position, same part name, same ``sheetId``); new sheets are appended.
* Not supported (a `BpxlError` says so): tables, pivot tables, slicers, timelines and threaded
  comments on the moved sheet, chartsheets, and Strict OOXML packages. Formulas, charts and
  defined names that point at sheets not present in the destination are copied as they are.
* If the destination does not exist: when ``names`` are exactly all sheets of ``src`` the result
  is a byte copy of ``src``; otherwise the sheets are transplanted into a minimal empty package.
"""

from __future__ import annotations

import copy
import io
import posixpath
import re
import shutil
import zipfile
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from lxml import etree

from backprop_xlsx.errors import BpxlError
from backprop_xlsx.xlsx.fileio import atomic_output
from backprop_xlsx.xlsx.read import (
    MAX_PART_BYTES,
    NS_MAIN,
    NS_PKG_REL,
    NS_R,
    DuplicateSheetNames,
    check_sheet_names,
    parse_xml,
    rels_name,
    resolve_target,
)

NS_CT = "http://schemas.openxmlformats.org/package/2006/content-types"
NS_STRICT = "http://purl.oclc.org/ooxml/spreadsheetml/main"

RT_OFFICE_DOCUMENT = f"{NS_R}/officeDocument"
RT_WORKSHEET = f"{NS_R}/worksheet"
RT_STYLES = f"{NS_R}/styles"
RT_SHARED_STRINGS = f"{NS_R}/sharedStrings"
RT_CALC_CHAIN = f"{NS_R}/calcChain"
RT_THEME = f"{NS_R}/theme"
CT_WORKSHEET = "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"
CT_CONTENT_TYPES = "[Content_Types].xml"

# Relationship types whose parts carry workbook-wide identities (table ids, pivot caches...).
_UNSUPPORTED = ("/table", "/pivotTable", "/slicer", "/timeline", "/threadedComment", "/queryTable")

_STYLE_ORDER = (
    "numFmts", "fonts", "fills", "borders", "cellStyleXfs", "cellXfs", "cellStyles",
    "dxfs", "tableStyles", "colors", "extLst",
)  # fmt: skip

_NEW_PART_TIME = (1980, 1, 1, 0, 0, 0)


def _m(tag: str) -> str:
    return f"{{{NS_MAIN}}}{tag}"


def _serialize(root: etree._Element) -> bytes:
    """XML with the declaration Excel itself writes (double quotes, standalone)."""
    return b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\r\n' + etree.tostring(
        root, encoding="UTF-8"
    )


def _relative(source_part: str, part: str) -> str:
    return posixpath.relpath(part, posixpath.dirname(source_part) or ".")


def _canon(el: etree._Element) -> bytes:
    """Comparable form of a style record: exclusive C14N without whitespace-only text."""
    clone = copy.deepcopy(el)
    for node in clone.iter():
        if node.text is not None and not node.text.strip():
            node.text = None
        if node.tail is not None and not node.tail.strip():
            node.tail = None
    return etree.tostring(clone, method="c14n", exclusive=True, with_tail=False)


@dataclass
class _Rel:
    id: str
    type: str
    target: str
    external: bool


@dataclass
class _SheetRef:
    name: str
    index: int
    element: etree._Element
    rel_id: str
    part: str
    rel_type: str


def safe_part_name(name: str) -> bool:
    """A zip member that can be a part: relative, no `..`, no backslash, no empty segment.

    Parts named otherwise are never read or copied: an archive tool would write them outside
    its folder, and no valid package needs them.
    """
    segments = name.split("/")
    return (
        bool(name)
        and not name.startswith("/")
        and "\\" not in name
        and ":" not in segments[0]
        and all(seg not in ("", ".", "..") for seg in segments)
    )


class _Package:
    """An xlsx package, read part by part from its zip on demand; changes are held in memory.

    Only the parts that are read (bookkeeping XML, the sheets being moved) are ever in memory;
    every other part is streamed from its zip when the package is written, so a package with
    a 100,000-row sheet costs what its small parts cost. A part copied from another package is
    streamed from that package's zip too.
    """

    def __init__(
        self,
        label: str,
        infos: list[zipfile.ZipInfo],
        data: dict[str, bytes],
        zf: zipfile.ZipFile | None = None,
    ) -> None:
        self.label = label
        self.infos = {i.filename: i for i in infos}
        self.order = [i.filename for i in infos]
        self._names = set(self.order)
        self.data = data  # parts held in memory: new, changed, or read
        self.zip = zf  # where the other parts are read from
        self.borrowed: dict[str, tuple[_Package, str]] = {}  # part -> (package, its part)
        self._trees: dict[str, etree._Element] = {}
        self.dirty: set[str] = set()

    @classmethod
    def open(cls, path: Path, role: str) -> _Package:
        """The package at `path`, its zip left open for reading parts (see `close`)."""
        if not path.exists():
            raise BpxlError(f"cannot read {role} {path}: no such file")
        if not path.is_file():
            raise BpxlError(f"cannot read {role} {path}: not a file")
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
            raise BpxlError(f"cannot read {role} {path}: not an xlsx workbook ({exc})") from exc
        except OSError as exc:
            raise BpxlError(f"cannot read {role} {path}: {exc.strerror or exc}") from exc
        infos = [i for i in zf.infolist() if not i.is_dir() and safe_part_name(i.filename)]
        pkg = cls(str(path), infos, {}, zf)
        if not pkg.has(CT_CONTENT_TYPES) or not pkg.has("_rels/.rels"):
            zf.close()
            raise BpxlError(f"cannot read {role} {path}: not an xlsx workbook (no package parts)")
        return pkg

    @classmethod
    def from_bytes(cls, label: str, package: bytes) -> _Package:
        """A package held wholly in memory (a small one: openpyxl's template)."""
        with zipfile.ZipFile(io.BytesIO(package)) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir() and safe_part_name(i.filename)]
            data = {i.filename: zf.read(i) for i in infos}
        return cls(label, infos, data)

    @classmethod
    def read(cls, path: Path, role: str) -> _Package:
        return cls.open(path, role)

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()

    def __enter__(self) -> _Package:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def skeleton(cls) -> _Package:
        """The smallest package the transplant can fill: a workbook without sheets, one style."""
        wb_ct = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"
        st_ct = "application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"
        parts = {
            CT_CONTENT_TYPES: (
                f'<Types xmlns="{NS_CT}">'
                '<Default Extension="rels" '
                'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
                '<Default Extension="xml" ContentType="application/xml"/>'
                f'<Override PartName="/xl/workbook.xml" ContentType="{wb_ct}"/>'
                f'<Override PartName="/xl/styles.xml" ContentType="{st_ct}"/></Types>'
            ),
            "_rels/.rels": (
                f'<Relationships xmlns="{NS_PKG_REL}"><Relationship Id="rId1" '
                f'Type="{RT_OFFICE_DOCUMENT}" Target="xl/workbook.xml"/></Relationships>'
            ),
            "xl/workbook.xml": (
                f'<workbook xmlns="{NS_MAIN}" xmlns:r="{NS_R}"><bookViews><workbookView/>'
                "</bookViews><sheets/></workbook>"
            ),
            "xl/_rels/workbook.xml.rels": (
                f'<Relationships xmlns="{NS_PKG_REL}"><Relationship Id="rId1" '
                f'Type="{RT_STYLES}" Target="styles.xml"/></Relationships>'
            ),
            "xl/styles.xml": (
                f'<styleSheet xmlns="{NS_MAIN}">'
                '<fonts count="1"><font><sz val="11"/><name val="Calibri"/><family val="2"/>'
                "</font></fonts>"
                '<fills count="2"><fill><patternFill patternType="none"/></fill>'
                '<fill><patternFill patternType="gray125"/></fill></fills>'
                '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border>'
                "</borders>"
                '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/>'
                "</cellStyleXfs>"
                '<cellXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" '
                'xfId="0"/></cellXfs>'
                '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/>'
                "</cellStyles></styleSheet>"
            ),
        }
        infos = []
        for name in parts:
            info = zipfile.ZipInfo(name, date_time=_NEW_PART_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            infos.append(info)
        data = {k: _serialize(etree.fromstring(v.encode())) for k, v in parts.items()}
        return cls("new workbook", infos, data)

    # -- parts -------------------------------------------------------------------------------

    def tree(self, part: str) -> etree._Element:
        """Parsed part, cached; callers that modify it must call `touch`."""
        if part not in self._trees:
            if not self.has(part):
                raise BpxlError(f"cannot read {self.label}: part {part} is missing")
            try:  # no DTD, no entities, no network: a user's workbook is untrusted input
                where = f"cannot read {self.label}: part {part}"
                self._trees[part] = parse_xml(self.bytes(part), where)
            except etree.XMLSyntaxError as exc:
                raise BpxlError(f"cannot read {self.label}: broken XML in {part} ({exc})") from exc
        return self._trees[part]

    def touch(self, part: str) -> None:
        self.dirty.add(part)

    def has(self, part: str) -> bool:
        return part in self._names

    def bytes(self, part: str) -> bytes:
        """A part's bytes (read from the zip, or from the package it is borrowed from)."""
        if part in self.data:
            return self.data[part]
        if part in self.borrowed:
            pkg, name = self.borrowed[part]
            return pkg.bytes(name)
        if self.zip is None or not self.has(part):
            raise BpxlError(f"cannot read {self.label}: part {part} is missing")
        self._check_size(part)
        try:
            return self.zip.read(self.infos[part])
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
            raise BpxlError(f"cannot read {self.label}: part {part} is damaged ({exc})") from None

    def open_part(self, part: str) -> IO[bytes]:
        """A part as a stream, to copy it without holding it in memory."""
        if part in self.data:
            return io.BytesIO(self.data[part])
        if part in self.borrowed:
            pkg, name = self.borrowed[part]
            return pkg.open_part(name)
        if self.zip is None or not self.has(part):
            raise BpxlError(f"cannot read {self.label}: part {part} is missing")
        self._check_size(part)
        return self.zip.open(self.infos[part])

    def _check_size(self, part: str) -> None:
        """zipfile inflates no more than a member's header says (then fails its CRC check), so
        bounding the header's size bounds what a part can make bpxl read, hold or copy."""
        size = self.infos[part].file_size
        if size > MAX_PART_BYTES:
            raise BpxlError(
                f"cannot read {self.label}: part {part} is {size:,} bytes uncompressed, more "
                f"than the {MAX_PART_BYTES:,} a part may hold"
            )

    def _add_name(self, part: str) -> None:
        if part not in self._names:
            self.order.append(part)
            self._names.add(part)

    def put(self, part: str, data: bytes) -> None:
        """Add or overwrite a part with raw bytes (new parts go to the end of the zip)."""
        self._add_name(part)
        self.borrowed.pop(part, None)
        self.data[part] = data
        self._trees.pop(part, None)
        self.dirty.discard(part)

    def borrow(self, part: str, source: _Package, source_part: str) -> None:
        """Add `part` as an unchanged copy of `source`'s part, streamed when written."""
        self._add_name(part)
        self.data.pop(part, None)
        self.borrowed[part] = (source, source_part)
        self._trees.pop(part, None)
        self.dirty.discard(part)

    def put_tree(self, part: str, root: etree._Element) -> None:
        self.put(part, b"")
        self._trees[part] = root
        self.dirty.add(part)

    def delete(self, part: str) -> None:
        if part in self._names:
            self._names.discard(part)
            self.order.remove(part)
        self.data.pop(part, None)
        self.borrowed.pop(part, None)
        self._trees.pop(part, None)
        self.dirty.discard(part)

    def flush(self) -> None:
        for part in sorted(self.dirty):
            self.data[part] = _serialize(self._trees[part])
        self.dirty.clear()

    def rels(self, part: str) -> list[_Rel]:
        """Relationships of `part` ("" for the package itself)."""
        name = rels_name(part)
        if not self.has(name) and name not in self._trees:
            return []
        return [
            _Rel(
                id=el.get("Id", ""),
                type=el.get("Type", ""),
                target=el.get("Target", ""),
                external=el.get("TargetMode") == "External",
            )
            for el in self.tree(name)
            if el.tag == f"{{{NS_PKG_REL}}}Relationship"
        ]

    def reachable(self, start: Iterable[str]) -> set[str]:
        """Parts reachable from `start` ("" = the package root) via internal relationships."""
        seen: set[str] = set()
        todo = list(start)
        while todo:
            part = todo.pop()
            for rel in self.rels(part):
                if rel.external:
                    continue
                target = resolve_target(part, rel.target) if part else rel.target.lstrip("/")
                if target not in seen and self.has(target):
                    seen.add(target)
                    todo.append(target)
        return seen

    # -- workbook ----------------------------------------------------------------------------

    def workbook_part(self) -> str:
        for rel in self.rels(""):
            if rel.type == RT_OFFICE_DOCUMENT:
                part = rel.target.lstrip("/")
                if self.has(part):
                    root = self.tree(part)
                    if root.tag == f"{{{NS_STRICT}}}workbook":
                        raise BpxlError(f"cannot read {self.label}: Strict OOXML is not supported")
                    if root.tag != _m("workbook"):
                        break
                    return part
        raise BpxlError(f"cannot read {self.label}: not an xlsx workbook (no workbook part)")

    def workbook_rel(self, rel_type: str) -> str | None:
        wb = self.workbook_part()
        for rel in self.rels(wb):
            if rel.type == rel_type and not rel.external:
                return resolve_target(wb, rel.target)
        return None

    def sheets(self) -> list[_SheetRef]:
        wb = self.workbook_part()
        by_id = {rel.id: rel for rel in self.rels(wb)}
        sheets_el = self.tree(wb).find(_m("sheets"))
        result = []
        for index, el in enumerate([] if sheets_el is None else sheets_el.findall(_m("sheet"))):
            rel_id = el.get(f"{{{NS_R}}}id", "")
            rel = by_id.get(rel_id)
            if rel is None:
                raise BpxlError(f"cannot read {self.label}: sheet {el.get('name')!r} has no part")
            result.append(
                _SheetRef(
                    name=el.get("name", ""),
                    index=index,
                    element=el,
                    rel_id=rel_id,
                    part=resolve_target(wb, rel.target),
                    rel_type=rel.type,
                )
            )
        try:
            check_sheet_names(s.name for s in result)
        except DuplicateSheetNames as exc:
            raise DuplicateSheetNames(exc.reason, f"cannot read {self.label}") from None
        return result

    def content_type(self, part: str) -> str | None:
        types = self.tree(CT_CONTENT_TYPES)
        for el in types.findall(f"{{{NS_CT}}}Override"):
            if el.get("PartName", "").lstrip("/") == part:
                return el.get("ContentType")
        ext = posixpath.splitext(part)[1].lstrip(".").lower()
        for el in types.findall(f"{{{NS_CT}}}Default"):
            if el.get("Extension", "").lower() == ext:
                return el.get("ContentType")
        return None

    def set_content_type(self, part: str, content_type: str) -> None:
        if self.content_type(part) == content_type:
            return
        types = self.tree(CT_CONTENT_TYPES)
        ext = posixpath.splitext(part)[1].lstrip(".").lower()
        has_default = any(
            el.get("Extension", "").lower() == ext for el in types.findall(f"{{{NS_CT}}}Default")
        )
        if ext and not has_default and not ext.endswith("xml"):  # e.g. png: a Default, as Excel
            el = etree.SubElement(types, f"{{{NS_CT}}}Default")
            el.set("Extension", ext)
        else:
            self.drop_content_type(part)
            el = etree.SubElement(types, f"{{{NS_CT}}}Override")
            el.set("PartName", f"/{part}")
        el.set("ContentType", content_type)
        self.touch(CT_CONTENT_TYPES)

    def drop_content_type(self, part: str) -> None:
        types = self.tree(CT_CONTENT_TYPES)
        for el in types.findall(f"{{{NS_CT}}}Override"):
            if el.get("PartName", "").lstrip("/") == part:
                types.remove(el)
                self.touch(CT_CONTENT_TYPES)

    def free_name(self, like: str, taken: set[str]) -> str:
        """A part name in `like`'s folder, with `like`'s stem and extension, not yet used."""
        folder, base = posixpath.split(like)
        stem, ext = posixpath.splitext(base)
        stem = re.sub(r"\d+$", "", stem) or "part"
        k = 1
        while True:
            name = posixpath.join(folder, f"{stem}{k}{ext}")
            lowered = name.lower()  # zip names are case-sensitive, OPC part names are not
            if not any(lowered == n.lower() for n in (*self.order, *taken)):
                taken.add(name)
                return name
            k += 1


class _Styles:
    """Maps cell-format indices of the source styles.xml onto the destination's, appending."""

    def __init__(self, src: _Package, dst: _Package) -> None:
        self.src, self.dst = src, dst
        self.src_root = self._load(src)
        self.dst_part = dst.workbook_rel(RT_STYLES)
        self.dst_root = dst.tree(self.dst_part) if self.dst_part else None
        self._memo: dict[tuple[str, int], int] = {}

    @staticmethod
    def _load(pkg: _Package) -> etree._Element | None:
        part = pkg.workbook_rel(RT_STYLES)
        return pkg.tree(part) if part else None

    def _section(self, root: etree._Element, tag: str, create: bool) -> etree._Element | None:
        found = root.find(_m(tag))
        if found is not None or not create:
            return found
        el = etree.Element(_m(tag))
        later = _STYLE_ORDER[_STYLE_ORDER.index(tag) + 1 :]
        for i, child in enumerate(root):
            if etree.QName(child).localname in later:
                root.insert(i, el)
                break
        else:
            root.append(el)
        return el

    def _require_dst(self) -> etree._Element:
        if self.dst_root is None or self.dst_part is None:
            raise BpxlError(f"cannot transplant into {self.dst.label}: it has no styles part")
        return self.dst_root

    def _add(self, section: str, child: str, el: etree._Element) -> int:
        """Index of an equal record in the destination section, appending one if needed."""
        root = self._require_dst()
        sec = self._section(root, section, create=True)
        assert sec is not None
        items = sec.findall(_m(child))
        key = _canon(el)
        for i, existing in enumerate(items):
            if _canon(existing) == key:
                return i
        sec.append(el)
        sec.set("count", str(len(items) + 1))
        self.dst.touch(self.dst_part or "")
        return len(items)

    def _copy(self, section: str, child: str, index: int) -> int:
        memo_key = (section, index)
        if memo_key in self._memo:
            return self._memo[memo_key]
        src_items = (
            [] if self.src_root is None else self.src_root.findall(f"{_m(section)}/{_m(child)}")
        )
        if not 0 <= index < len(src_items):
            result = 0  # a dangling index in the source: fall back to the default record
        else:
            el = copy.deepcopy(src_items[index])
            if child == "xf":
                self._remap_xf(el)
            elif child == "dxf":
                self._remap_dxf(el)
            result = self._add(section, child, el)
        self._memo[memo_key] = result
        return result

    def _remap_xf(self, xf: etree._Element) -> None:
        if xf.get("numFmtId") is not None:
            xf.set("numFmtId", str(self._numfmt(int(xf.get("numFmtId", "0")))))
        for attr, section, child in (
            ("fontId", "fonts", "font"),
            ("fillId", "fills", "fill"),
            ("borderId", "borders", "border"),
        ):
            if xf.get(attr) is not None:
                xf.set(attr, str(self._copy(section, child, int(xf.get(attr, "0")))))
        if xf.get("xfId") is not None:
            xf.set("xfId", str(self._named_style(int(xf.get("xfId", "0")))))

    def _named_style(self, index: int) -> int:
        """The destination's record for the source's named cell style `index` (its xfId).

        A style the destination has by the same name is used as it is (Normal, Hyperlink);
        any other is appended with its own record, so the cell keeps its style's name.
        """
        memo_key = ("cellStyles", index)
        if index == 0 or self.src_root is None:
            return 0
        if memo_key in self._memo:
            return self._memo[memo_key]
        styles = self.src_root.findall(f"{_m('cellStyles')}/{_m('cellStyle')}")
        style = next((el for el in styles if el.get("xfId") == str(index)), None)
        records = self.src_root.findall(f"{_m('cellStyleXfs')}/{_m('xf')}")
        result = 0
        if style is not None and index < len(records):
            root = self._require_dst()
            named = self._section(root, "cellStyles", create=True)
            assert named is not None
            name = (style.get("name") or "").casefold()
            same = next((el for el in named if (el.get("name") or "").casefold() == name), None)
            if same is not None:
                result = int(same.get("xfId", "0") or 0)
            else:
                record = copy.deepcopy(records[index])
                record.attrib.pop("xfId", None)
                self._remap_xf(record)
                section = self._section(root, "cellStyleXfs", create=True)
                assert section is not None
                result = len(section.findall(_m("xf")))
                section.append(record)  # never shared: each named style has its own record
                section.set("count", str(result + 1))
                entry = copy.deepcopy(style)
                entry.set("xfId", str(result))
                named.append(entry)
                named.set("count", str(len(named.findall(_m("cellStyle")))))
                self.dst.touch(self.dst_part or "")
        self._memo[memo_key] = result
        return result

    def _remap_dxf(self, dxf: etree._Element) -> None:
        fmt = dxf.find(_m("numFmt"))
        if fmt is not None and fmt.get("formatCode") is not None:
            fmt.set("numFmtId", str(self._numfmt_code(fmt.get("formatCode", ""))))

    def _numfmt(self, fmt_id: int) -> int:
        if self.src_root is not None:
            for el in self.src_root.iterfind(f"{_m('numFmts')}/{_m('numFmt')}"):
                if el.get("numFmtId") == str(fmt_id):
                    return self._numfmt_code(el.get("formatCode", ""))
        return fmt_id  # a built-in format: same id everywhere

    def _numfmt_code(self, code: str) -> int:
        root = self._require_dst()
        sec = self._section(root, "numFmts", create=True)
        assert sec is not None
        ids = []
        for el in sec.findall(_m("numFmt")):
            if el.get("formatCode") == code:
                return int(el.get("numFmtId", "0"))
            ids.append(int(el.get("numFmtId", "0")))
        new_id = max([163, *ids]) + 1
        el = etree.SubElement(sec, _m("numFmt"))
        el.set("numFmtId", str(new_id))
        el.set("formatCode", code)
        sec.set("count", str(len(ids) + 1))
        self.dst.touch(self.dst_part or "")
        return new_id

    def xf(self, index: int) -> int:
        return 0 if index == 0 else self._copy("cellXfs", "xf", index)

    def dxf(self, index: int) -> int:
        return self._copy("dxfs", "dxf", index)


class _Transplant:
    def __init__(self, src: _Package, dst: _Package, removed: Sequence[str] = ()) -> None:
        self.src, self.dst = src, dst
        self.removed = {name.casefold(): name for name in removed}
        self.warnings: list[str] = []
        self._moving = ""  # the sheet being moved, for warnings
        self.styles = _Styles(src, dst)
        self.copied: dict[str, str] = {}  # source part -> destination part
        self.taken: set[str] = set()
        self.orphans: set[str] = set()  # destination parts that may have lost their last user
        self.replaced_any = False
        sst_part = src.workbook_rel(RT_SHARED_STRINGS)
        self.sst: list[etree._Element] = (
            [] if sst_part is None else src.tree(sst_part).findall(_m("si"))
        )
        self.src_sheets = src.sheets()
        self.src_wb = src.workbook_part()
        self.dst_wb = dst.workbook_part()

    # -- the sheet XML -----------------------------------------------------------------------

    def _sheet_xml(self, sheet: _SheetRef, keep_selected: bool) -> etree._Element:
        root = copy.deepcopy(self.src.tree(sheet.part))
        if root.tag != _m("worksheet"):
            raise BpxlError(f"sheet {sheet.name!r} of {self.src.label} is not a worksheet")
        for cell in root.iter(_m("c")):
            self._remap_attr(cell, "s", self.styles.xf)
            if cell.get("t") == "s":
                self._inline_string(cell, sheet.name)
        if self.removed:
            self._check_references(
                f"sheet {sheet.name!r}",
                ((f.getparent().get("r", "?"), f.text or "") for f in root.iter(_m("f"))),
            )
        for row in root.iter(_m("row")):
            self._remap_attr(row, "s", self.styles.xf)
        for col in root.iter(_m("col")):
            self._remap_attr(col, "style", self.styles.xf)
        for rule in root.iter(_m("cfRule")):
            self._remap_attr(rule, "dxfId", self.styles.dxf)
        if not keep_selected:  # two selected tabs would group the sheets in Excel
            for view in root.iter(_m("sheetView")):
                view.attrib.pop("tabSelected", None)
        return root

    def _check_references(self, where: str, formulas: Iterable[tuple[str, str]]) -> None:
        """Warn once per sheet of `removed` that a formula of `where` refers to."""
        first: dict[str, str] = {}
        for place, formula in formulas:
            for name in sheet_references(formula) & self.removed.keys():
                first.setdefault(name, place)
        for name, place in first.items():
            self.warnings.append(
                f"{where} refers to sheet {self.removed[name]!r}"
                + (f" (first in {place})" if place else "")
                + ", which this build removes: those references will show #REF! or #NAME?"
            )

    @staticmethod
    def _remap_attr(el: etree._Element, attr: str, mapping: Callable[[int], int]) -> None:
        value = el.get(attr)
        if value is not None and value.strip().isdigit():
            el.set(attr, str(mapping(int(value))))

    def _inline_string(self, cell: etree._Element, sheet_name: str) -> None:
        v = cell.find(_m("v"))
        try:
            si = self.sst[int((v.text if v is not None else "") or "")]
        except (ValueError, IndexError):
            raise BpxlError(
                f"cannot read {self.src.label}: cell {cell.get('r')} of sheet {sheet_name!r} "
                "points to a missing shared string"
            ) from None
        inline = etree.Element(_m("is"))
        for child in si:
            inline.append(copy.deepcopy(child))
        assert v is not None
        v.addprevious(inline)
        cell.remove(v)
        cell.set("t", "inlineStr")

    # -- related parts -----------------------------------------------------------------------

    def _copy_part(self, part: str) -> str:
        """Copy a source part (and, recursively, its relationships) under a fresh name."""
        if part in self.copied:
            return self.copied[part]
        if not safe_part_name(part):
            raise BpxlError(
                f"refusing to copy from {self.src.label}: a relationship names the part "
                f"{part!r}, outside the package"
            )
        if not self.src.has(part):
            raise BpxlError(f"cannot read {self.src.label}: part {part} is missing")
        new = self.dst.free_name(part, self.taken)
        self.copied[part] = new
        content_type = self.src.content_type(part)
        if content_type:
            self.dst.set_content_type(new, content_type)
        self.dst.borrow(new, self.src, part)
        if self.removed and (content_type or "").endswith("drawingml.chart+xml"):
            refs = self.src.tree(part).iter("{*}f")
            self._check_references(
                f"a chart on sheet {self._moving!r}", (("", el.text or "") for el in refs)
            )
        self._copy_rels(part, new)
        return new

    def _copy_rels(self, src_part: str, dst_part: str) -> bool:
        """Write `dst_part`'s relationships: same ids, targets copied. False if there are none."""
        rels = self.src.rels(src_part)
        if not rels:
            return False
        root = etree.Element(f"{{{NS_PKG_REL}}}Relationships", nsmap={None: NS_PKG_REL})
        for rel in rels:
            el = etree.SubElement(root, f"{{{NS_PKG_REL}}}Relationship")
            el.set("Id", rel.id)
            el.set("Type", rel.type)
            if rel.external:
                el.set("Target", rel.target)
                el.set("TargetMode", "External")
                continue
            if rel.type.endswith(_UNSUPPORTED):
                kind = rel.type.rsplit("/", 1)[-1]
                raise BpxlError(
                    f"cannot transplant from {self.src.label}: {src_part} has a {kind} part, "
                    "which is not supported"
                )
            copied = self._copy_part(resolve_target(src_part, rel.target))
            el.set("Target", _relative(dst_part, copied))
        self.dst.put_tree(rels_name(dst_part), root)
        return True

    # -- one sheet ---------------------------------------------------------------------------

    def move(self, name: str) -> None:
        self._moving = name
        sheet = next((s for s in self.src_sheets if s.name == name), None)
        if sheet is None:
            available = ", ".join(repr(s.name) for s in self.src_sheets)
            raise BpxlError(f"sheet {name!r} is not in {self.src.label} (it has {available})")
        if sheet.rel_type != RT_WORKSHEET:
            raise BpxlError(f"sheet {name!r} of {self.src.label} is not a worksheet")
        existing = next(
            (s for s in self.dst.sheets() if s.name.casefold() == name.casefold()), None
        )
        if existing is not None:
            self._replace(sheet, existing)
        else:
            self._append(sheet)

    def _replace(self, sheet: _SheetRef, old: _SheetRef) -> None:
        if old.rel_type != RT_WORKSHEET:
            raise BpxlError(f"cannot replace {old.name!r} in {self.dst.label}: not a worksheet")
        self.replaced_any = True
        self.orphans |= self.dst.reachable([old.part])
        old_root = self.dst.tree(old.part)
        selected = any(
            v.get("tabSelected") in ("1", "true") for v in old_root.iter(_m("sheetView"))
        )
        self.dst.put_tree(old.part, self._sheet_xml(sheet, keep_selected=selected))
        self.dst.delete(rels_name(old.part))
        self._copy_rels(sheet.part, old.part)
        if old.name != sheet.name:
            old.element.set("name", sheet.name)
            self.dst.touch(self.dst_wb)
        self._move_local_names(sheet.index, old.index)

    def _append(self, sheet: _SheetRef) -> None:
        dst_sheets = self.dst.sheets()
        part = self.dst.free_name("xl/worksheets/sheet1.xml", self.taken)
        self.dst.put_tree(part, self._sheet_xml(sheet, keep_selected=not dst_sheets))
        self.dst.set_content_type(part, self.src.content_type(sheet.part) or CT_WORKSHEET)
        self._copy_rels(sheet.part, part)
        rel_id = self._add_workbook_rel(RT_WORKSHEET, part)

        wb = self.dst.tree(self.dst_wb)
        sheets_el = wb.find(_m("sheets"))
        assert sheets_el is not None
        el = etree.SubElement(sheets_el, _m("sheet"), nsmap={"r": NS_R})
        el.set("name", sheet.name)
        sheet_ids = [int(s.element.get("sheetId", "0")) for s in dst_sheets]
        el.set("sheetId", str(max([0, *sheet_ids]) + 1))
        if sheet.element.get("state") not in (None, "visible"):
            el.set("state", sheet.element.get("state", ""))
        el.set(f"{{{NS_R}}}id", rel_id)
        self.dst.touch(self.dst_wb)
        self._move_local_names(sheet.index, len(dst_sheets))

    def _add_workbook_rel(self, rel_type: str, part: str) -> str:
        """A new relationship from the destination workbook to `part`; returns its id."""
        rels_part = rels_name(self.dst_wb)
        rels_root = self.dst.tree(rels_part)
        used_ids = {el.get("Id") for el in rels_root}
        k = len(used_ids) + 1
        while f"rId{k}" in used_ids:
            k += 1
        rel = etree.SubElement(rels_root, f"{{{NS_PKG_REL}}}Relationship")
        rel.set("Id", f"rId{k}")
        rel.set("Type", rel_type)
        rel.set("Target", _relative(self.dst_wb, part))
        self.dst.touch(rels_part)
        return f"rId{k}"

    def _move_local_names(self, src_index: int, dst_index: int) -> None:
        """Sheet-local defined names (print area, print titles, filters) follow the sheet."""
        wb = self.dst.tree(self.dst_wb)
        names_el = wb.find(_m("definedNames"))
        if names_el is not None:
            for el in names_el.findall(_m("definedName")):
                if el.get("localSheetId") == str(dst_index):
                    names_el.remove(el)
                    self.dst.touch(self.dst_wb)
        src_names = self.src.tree(self.src_wb).find(_m("definedNames"))
        local = [] if src_names is None else [
            el for el in src_names.findall(_m("definedName"))
            if el.get("localSheetId") == str(src_index)
        ]  # fmt: skip
        if not local:
            return
        if names_el is None:
            names_el = _new_defined_names(wb)
        for el in local:
            clone = copy.deepcopy(el)
            clone.set("localSheetId", str(dst_index))
            names_el.append(clone)
        self.dst.touch(self.dst_wb)

    def copy_workbook_names(self) -> None:
        """Carry the source's workbook-level defined names (not sheet-local ones) over.

        A name the destination already defines is left as the destination has it.
        """
        src_names = self.src.tree(self.src_wb).find(_m("definedNames"))
        if src_names is None:
            return
        wb = self.dst.tree(self.dst_wb)
        names_el = wb.find(_m("definedNames"))
        taken = set() if names_el is None else {
            el.get("name", "").casefold()
            for el in names_el.findall(_m("definedName"))
            if el.get("localSheetId") is None
        }  # fmt: skip
        carried = [
            el
            for el in src_names.findall(_m("definedName"))
            if el.get("localSheetId") is None and el.get("name", "").casefold() not in taken
        ]
        if not carried:
            return
        if names_el is None:
            names_el = _new_defined_names(wb)
        for el in carried:
            names_el.append(copy.deepcopy(el))
            if self.removed:
                self._check_references(
                    f"defined name {el.get('name')!r}", [(el.get("name", ""), el.text or "")]
                )
        self.dst.touch(self.dst_wb)

    def use_source_theme(self) -> None:
        """The destination takes the source's theme, so carried sheets keep their colours."""
        theme = self.src.workbook_rel(RT_THEME)
        own = self.dst.workbook_rel(RT_THEME)
        if theme is None or not self.src.has(theme) or own is None or self.src.rels(theme):
            return  # no theme of its own: finish() copies the source's
        self.dst.borrow(own, self.src, theme)

    # -- cleanup -----------------------------------------------------------------------------

    def finish(self) -> None:
        self._copy_theme()
        if self.replaced_any:
            self._drop_calc_chain()
        self.dst.flush()
        live = self.dst.reachable([""])
        for part in sorted(self.orphans - live):
            self.dst.delete(part)
            self.dst.delete(rels_name(part))
            self.dst.drop_content_type(part)
        self.dst.flush()

    def _copy_theme(self) -> None:
        """Give a destination without a theme the source's, which the moved sheets may rely on."""
        theme = self.src.workbook_rel(RT_THEME)
        if theme is None or not self.src.has(theme):
            return
        if self.dst.workbook_rel(RT_THEME) is not None:  # its own theme wins, as in Excel
            return
        self._add_workbook_rel(RT_THEME, self._copy_part(theme))

    def _drop_calc_chain(self) -> None:
        rels_part = rels_name(self.dst_wb)
        for el in self.dst.tree(rels_part).findall(f"{{{NS_PKG_REL}}}Relationship"):
            if el.get("Type") == RT_CALC_CHAIN:
                part = resolve_target(self.dst_wb, el.get("Target", ""))
                el.getparent().remove(el)
                self.dst.touch(rels_part)
                self.dst.delete(part)
                self.dst.drop_content_type(part)


def write_package(
    pkg: _Package,
    path: Path,
    *,
    streams: Mapping[str, Callable[[bytes], Iterable[bytes]]] | None = None,
    stream_level: int | None = None,
) -> None:
    """Write `pkg` to the zip file `path` (not atomic: callers write to a temporary file).

    Parts held in memory are written as they are; every other part is copied from its zip
    member by member (shutil.copyfileobj), never held whole. A part in `streams` is written
    from the chunks its function makes of the part's bytes (deflate level `stream_level`).
    """
    pkg.flush()
    streams = streams or {}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        order = [CT_CONTENT_TYPES] + [p for p in pkg.order if p != CT_CONTENT_TYPES]
        for part in order:
            old = pkg.infos.get(part)  # keep dates and attributes, not stale zip headers
            info = zipfile.ZipInfo(part, date_time=old.date_time if old else _NEW_PART_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            if old is not None:
                info.external_attr = old.external_attr
            if part in streams:
                if stream_level is not None:
                    info._compresslevel = stream_level  # type: ignore[attr-defined]
                with z.open(info, "w", force_zip64=True) as fh:
                    for chunk in streams[part](pkg.bytes(part)):
                        fh.write(chunk)
            elif part in pkg.data:
                z.writestr(info, pkg.data[part])
            else:
                with pkg.open_part(part) as fin, z.open(info, "w", force_zip64=True) as fout:
                    shutil.copyfileobj(fin, fout, 1 << 20)


def transplant_sheets(src: Path, dst: Path, names: Sequence[str], out: Path | None = None) -> None:
    """Copy worksheets `names` from xlsx `src` into xlsx `dst`, written atomically to `out`.

    `out` defaults to `dst`. Same-named sheets are replaced in place, others appended in the
    order given; every other part of `dst` stays byte-identical (see the module docstring).
    """
    src, dst = Path(src), Path(dst)
    out = dst if out is None else Path(out)
    if isinstance(names, str):
        names = [names]
    names = list(names)
    if not names:
        raise BpxlError("no sheet names given to transplant")
    folded = [n.casefold() for n in names]
    if len(set(folded)) != len(folded):
        raise BpxlError(f"sheet names given twice: {names}")

    with _Package.open(src, "source") as source:
        src_names = [s.name for s in source.sheets()]
        missing = [n for n in names if n not in src_names]
        if missing:
            available = ", ".join(repr(n) for n in src_names)
            raise BpxlError(f"sheet {missing[0]!r} is not in {src} (it has {available})")
        copy_whole = not dst.exists() and sorted(src_names) == sorted(names)
    if copy_whole:
        with atomic_output(out) as tmp:
            shutil.copyfile(src, tmp)
        return
    with atomic_output(out) as tmp:  # both zips are closed before the rename onto `out`
        target = _Package.open(dst, "destination") if dst.exists() else _Package.skeleton()
        with _Package.open(src, "source") as source, target:
            transplant = _Transplant(source, target)
            for name in names:
                transplant.move(name)
            transplant.finish()
            write_package(target, tmp)


# --- what a workbook says about itself --------------------------------------------------------

RT_CUSTOM_PROPERTIES = f"{NS_R}/custom-properties"
NS_CUSTOM = "http://schemas.openxmlformats.org/officeDocument/2006/custom-properties"


@dataclass(frozen=True)
class WorkbookFacts:
    """What a rebuild needs to know of an existing workbook, read without loading its sheets."""

    sheets: list[str]  # titles, in workbook order
    properties: dict[str, str]  # custom document properties with a text value
    cells: dict[tuple[str, str], str]  # (sheet, cell) -> its text, for the cells asked for


def workbook_facts(path: Path, cells: Sequence[tuple[str, str]] = ()) -> WorkbookFacts:
    """Sheet titles, custom document properties and the text of a few cells of xlsx `path`.

    Reads the bookkeeping parts and only the sheets named in `cells` (with the shared
    strings if they need them); BpxlError if `path` is not an xlsx workbook.
    """
    with _Package.open(Path(path), "workbook") as pkg:
        sheets = pkg.sheets()
        properties: dict[str, str] = {}
        for rel in pkg.rels(""):
            if rel.type == RT_CUSTOM_PROPERTIES and not rel.external:
                part = rel.target.lstrip("/")
                if pkg.has(part):
                    for prop in pkg.tree(part).iter(f"{{{NS_CUSTOM}}}property"):
                        value = next((el.text for el in prop if len(el) == 0), None)
                        if prop.get("name") and value is not None:
                            properties[prop.get("name", "")] = value
        found: dict[tuple[str, str], str] = {}
        wanted = {(sheet, cell) for sheet, cell in cells}
        by_name = {s.name: s for s in sheets}
        strings: list[str] | None = None
        for name in sorted({sheet for sheet, _ in wanted if sheet in by_name}):
            if by_name[name].rel_type != RT_WORKSHEET:
                continue
            root = pkg.tree(by_name[name].part)
            for c in root.iter(_m("c")):
                if (name, c.get("r")) not in wanted:
                    continue
                kind = c.get("t", "n")
                if kind == "inlineStr":
                    text = "".join(t.text or "" for t in c.iter(_m("t")))
                else:
                    v = c.find(_m("v"))
                    text = (v.text if v is not None else None) or ""
                    if kind == "s":
                        if strings is None:
                            sst = pkg.workbook_rel(RT_SHARED_STRINGS)
                            strings = [] if sst is None else [
                                "".join(t.text or "" for t in si.iter(_m("t")))
                                for si in pkg.tree(sst).iter(_m("si"))
                            ]  # fmt: skip
                        index = int(text) if text.isdigit() else -1
                        text = strings[index] if 0 <= index < len(strings) else ""
                found[(name, c.get("r", ""))] = text
        return WorkbookFacts([s.name for s in sheets], properties, found)


# --- a new workbook with sheets carried over from an old one -----------------------------------

_SHEET_REF = re.compile(r"'((?:[^']|'')+)'!|(?<![\w.'\]])([^\W\d][\w.]*)!")


def sheet_references(formula: str) -> set[str]:
    """Names of the sheets a formula refers to, casefolded: `'LR 7'!W4`, `Setup!$B$4`."""
    return {
        (quoted.replace("''", "'") if quoted else bare).casefold()
        for quoted, bare in _SHEET_REF.findall(formula)
    }


def _new_defined_names(wb: etree._Element) -> etree._Element:
    """An empty <definedNames> in its place in workbook.xml: right after <sheets>."""
    names_el = etree.Element(_m("definedNames"))
    sheets_el = wb.find(_m("sheets"))
    assert sheets_el is not None
    sheets_el.addnext(names_el)
    return names_el


def build_package(
    template: bytes,
    out: Path,
    *,
    streams: Mapping[str, Callable[[bytes], Iterable[bytes]]],
    stream_level: int | None = None,
    carry_from: Path | None = None,
    carry: Sequence[str] = (),
    removed: Sequence[str] = (),
) -> list[str]:
    """Write the package `template` to `out` (not atomic), streaming sheets, carrying others.

    `streams` maps sheet titles of the template to functions that write their XML (see
    `write_package`). The sheets `carry` of workbook `carry_from` are appended, with what they
    need (see the module docstring), and so are its workbook-level defined names and its theme:
    both packages are read part by part, never held whole. Returns warnings: formulas, chart
    ranges and defined names carried over that refer to the sheets `removed`.
    """
    pkg = _Package.from_bytes("new workbook", template)
    parts = {s.name: s.part for s in pkg.sheets()}
    by_part = {parts[title]: fn for title, fn in streams.items()}
    if carry_from is None or not carry:
        write_package(pkg, out, streams=by_part, stream_level=stream_level)
        return []
    with _Package.open(Path(carry_from), "workbook") as old:
        transplant = _Transplant(old, pkg, removed=removed)
        for name in carry:
            transplant.move(name)
        transplant.copy_workbook_names()
        transplant.use_source_theme()
        transplant.finish()
        write_package(pkg, out, streams=by_part, stream_level=stream_level)
    return transplant.warnings
