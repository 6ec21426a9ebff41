"""An xlsx package opened for editing: its parts, relationships and content types, streamed.

The transplant (transplant.py) and the cell-format merge (styles.py) edit a destination package
part by part, so `PackageParts` holds only the bookkeeping parts and the parts being moved,
parsed with the hardened parser of parts.py, and writes every other part back member by member
from its zip. It edits; it reads no cells: that is read.py's `Package`, the one reader.
"""

from __future__ import annotations

import copy
import io
import posixpath
import re
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from lxml import etree

from backprop_xlsx.errors import BpxlError
from backprop_xlsx.xlsx.parts import (
    MAX_PART_BYTES,
    NS_MAIN,
    NS_PKG_REL,
    NS_R,
    NS_STRICT,
    DuplicateSheetNames,
    check_sheet_names,
    open_zip,
    parse_xml,
    rels_name,
    resolve_target,
)

NS_CT = "http://schemas.openxmlformats.org/package/2006/content-types"

RT_OFFICE_DOCUMENT = f"{NS_R}/officeDocument"
RT_WORKSHEET = f"{NS_R}/worksheet"
RT_STYLES = f"{NS_R}/styles"
RT_SHARED_STRINGS = f"{NS_R}/sharedStrings"
RT_CALC_CHAIN = f"{NS_R}/calcChain"
RT_THEME = f"{NS_R}/theme"
CT_WORKSHEET = "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"
CT_CONTENT_TYPES = "[Content_Types].xml"

# Relationship types whose parts carry workbook-wide identities (table ids, pivot caches...).
UNSUPPORTED = ("/table", "/pivotTable", "/slicer", "/timeline", "/threadedComment", "/queryTable")

STYLE_ORDER = (
    "numFmts", "fonts", "fills", "borders", "cellStyleXfs", "cellXfs", "cellStyles",
    "dxfs", "tableStyles", "colors", "extLst",
)  # fmt: skip

NEW_PART_TIME = (1980, 1, 1, 0, 0, 0)


NS_DCTERMS = "http://purl.org/dc/terms/"
NS_EXTENDED = "http://schemas.openxmlformats.org/officeDocument/2006/extended-properties"


def main_tag(tag: str) -> str:
    return f"{{{NS_MAIN}}}{tag}"


def _serialize(root: etree._Element) -> bytes:
    """XML with the declaration Excel itself writes (double quotes, standalone)."""
    return b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\r\n' + etree.tostring(
        root, encoding="UTF-8"
    )


def relative_target(source_part: str, part: str) -> str:
    return posixpath.relpath(part, posixpath.dirname(source_part) or ".")


def canonical(el: etree._Element) -> bytes:
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
class SheetRef:
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


class PackageParts:
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
        self.borrowed: dict[str, tuple[PackageParts, str]] = {}  # part -> (package, its part)
        self._trees: dict[str, etree._Element] = {}
        self.dirty: set[str] = set()

    @classmethod
    def open(cls, path: Path, role: str) -> PackageParts:
        """The package at `path`, its zip left open for reading parts (see `close`)."""
        zf = open_zip(path, f"cannot read {role} {path}")
        infos = [i for i in zf.infolist() if not i.is_dir() and safe_part_name(i.filename)]
        pkg = cls(str(path), infos, {}, zf)
        if not pkg.has(CT_CONTENT_TYPES) or not pkg.has("_rels/.rels"):
            zf.close()
            raise BpxlError(f"cannot read {role} {path}: not an xlsx workbook (no package parts)")
        return pkg

    @classmethod
    def new(cls, package: bytes, application: str | None = None) -> PackageParts:
        """A new workbook from the package another library wrote (openpyxl's), held in memory,
        without what changes from run to run: every zip date is the format's earliest and
        docProps/core.xml loses its created and modified times, so the same content gives the
        same bytes. `application`, if given, names the program in docProps/app.xml."""
        with zipfile.ZipFile(io.BytesIO(package)) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir() and safe_part_name(i.filename)]
            data = {i.filename: zf.read(i) for i in infos}
        for info in infos:
            info.date_time = NEW_PART_TIME
        # both parts are written back as openpyxl wrote them, without an XML declaration
        if "docProps/core.xml" in data:
            core = parse_xml(data["docProps/core.xml"], "docProps/core.xml")
            for el in core.findall(f"{{{NS_DCTERMS}}}*"):
                if etree.QName(el).localname in ("created", "modified"):
                    core.remove(el)
            data["docProps/core.xml"] = etree.tostring(core)
        if application is not None and "docProps/app.xml" in data:
            app = parse_xml(data["docProps/app.xml"], "docProps/app.xml")
            for el in app.findall(f"{{{NS_EXTENDED}}}Application"):
                el.text = application
            data["docProps/app.xml"] = etree.tostring(app)
        return cls("new workbook", infos, data)

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()

    def __enter__(self) -> PackageParts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def skeleton(cls) -> PackageParts:
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
            info = zipfile.ZipInfo(name, date_time=NEW_PART_TIME)
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

    def borrow(self, part: str, source: PackageParts, source_part: str) -> None:
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
                    if root.tag != main_tag("workbook"):
                        break
                    return part
        raise BpxlError(f"cannot read {self.label}: not an xlsx workbook (no workbook part)")

    def workbook_rel(self, rel_type: str) -> str | None:
        wb = self.workbook_part()
        for rel in self.rels(wb):
            if rel.type == rel_type and not rel.external:
                return resolve_target(wb, rel.target)
        return None

    def sheets(self) -> list[SheetRef]:
        wb = self.workbook_part()
        by_id = {rel.id: rel for rel in self.rels(wb)}
        sheets_el = self.tree(wb).find(main_tag("sheets"))
        result = []
        for index, el in enumerate(
            [] if sheets_el is None else sheets_el.findall(main_tag("sheet"))
        ):
            rel_id = el.get(f"{{{NS_R}}}id", "")
            rel = by_id.get(rel_id)
            if rel is None:
                raise BpxlError(f"cannot read {self.label}: sheet {el.get('name')!r} has no part")
            result.append(
                SheetRef(
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
