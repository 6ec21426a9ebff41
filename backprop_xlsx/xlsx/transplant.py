"""Move worksheets between xlsx packages at the zip/XML level, leaving everything else untouched.

Why not openpyxl: loading and saving a workbook with openpyxl drops every cached formula value and
rewrites (and sometimes alters) charts, so a workbook recalculated by LibreOffice or Excel would
lose exactly what makes it checkable. Here the destination is edited part by part: the moved
sheet's XML and the parts it relates to (drawings, charts, images, comments, …) are copied under
fresh part names, only the bookkeeping parts change, and every other part is copied member by
member, byte for byte, never held whole (a rebuild of a 100,000-step workbook with one user
sheet peaks at what a fresh build does, 1.00×; reading both packages whole took 9×:
benchmarks/bench_rebuild.py). `transplant_sheets` lists what changes and what is refused.
"""

from __future__ import annotations

import copy
import re
import shutil
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from lxml import etree

from backprop_xlsx.errors import BpxlError
from backprop_xlsx.xlsx.fileio import atomic_output
from backprop_xlsx.xlsx.package import (
    CT_CONTENT_TYPES,
    CT_WORKSHEET,
    NEW_PART_TIME,
    RT_CALC_CHAIN,
    RT_SHARED_STRINGS,
    RT_THEME,
    RT_WORKSHEET,
    UNSUPPORTED,
    PackageParts,
    SheetRef,
    main_tag,
    relative_target,
    safe_part_name,
)
from backprop_xlsx.xlsx.parts import NS_PKG_REL, NS_R, rels_name, resolve_target
from backprop_xlsx.xlsx.styles import Styles


class _Transplant:
    def __init__(self, src: PackageParts, dst: PackageParts, removed: Sequence[str] = ()) -> None:
        self.src, self.dst = src, dst
        self.removed = {name.casefold(): name for name in removed}
        self.warnings: list[str] = []
        self._moving = ""  # the sheet being moved, for warnings
        self.styles = Styles(src, dst)
        self.copied: dict[str, str] = {}  # source part -> destination part
        self.taken: set[str] = set()
        self.orphans: set[str] = set()  # destination parts that may have lost their last user
        self.replaced_any = False
        sst_part = src.workbook_rel(RT_SHARED_STRINGS)
        self.sst: list[etree._Element] = (
            [] if sst_part is None else src.tree(sst_part).findall(main_tag("si"))
        )
        self.src_sheets = src.sheets()
        self.src_wb = src.workbook_part()
        self.dst_wb = dst.workbook_part()

    # -- the sheet XML -----------------------------------------------------------------------

    def _sheet_xml(self, sheet: SheetRef, keep_selected: bool) -> etree._Element:
        root = copy.deepcopy(self.src.tree(sheet.part))
        if root.tag != main_tag("worksheet"):
            raise BpxlError(f"sheet {sheet.name!r} of {self.src.label} is not a worksheet")
        for cell in root.iter(main_tag("c")):
            self._remap_attr(cell, "s", self.styles.xf)
            if cell.get("t") == "s":
                self._inline_string(cell, sheet.name)
        if self.removed:
            self._check_references(
                f"sheet {sheet.name!r}",
                ((f.getparent().get("r", "?"), f.text or "") for f in root.iter(main_tag("f"))),
            )
        for row in root.iter(main_tag("row")):
            self._remap_attr(row, "s", self.styles.xf)
        for col in root.iter(main_tag("col")):
            self._remap_attr(col, "style", self.styles.xf)
        for rule in root.iter(main_tag("cfRule")):
            self._remap_attr(rule, "dxfId", self.styles.dxf)
        if not keep_selected:  # two selected tabs would group the sheets in Excel
            for view in root.iter(main_tag("sheetView")):
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
        v = cell.find(main_tag("v"))
        try:
            si = self.sst[int((v.text if v is not None else "") or "")]
        except (ValueError, IndexError):
            raise BpxlError(
                f"cannot read {self.src.label}: cell {cell.get('r')} of sheet {sheet_name!r} "
                "points to a missing shared string"
            ) from None
        inline = etree.Element(main_tag("is"))
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
            if rel.type.endswith(UNSUPPORTED):
                kind = rel.type.rsplit("/", 1)[-1]
                raise BpxlError(
                    f"cannot transplant from {self.src.label}: {src_part} has a {kind} part, "
                    "which is not supported"
                )
            copied = self._copy_part(resolve_target(src_part, rel.target))
            el.set("Target", relative_target(dst_part, copied))
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

    def _replace(self, sheet: SheetRef, old: SheetRef) -> None:
        if old.rel_type != RT_WORKSHEET:
            raise BpxlError(f"cannot replace {old.name!r} in {self.dst.label}: not a worksheet")
        self.replaced_any = True
        self.orphans |= self.dst.reachable([old.part])
        old_root = self.dst.tree(old.part)
        selected = any(
            v.get("tabSelected") in ("1", "true") for v in old_root.iter(main_tag("sheetView"))
        )
        self.dst.put_tree(old.part, self._sheet_xml(sheet, keep_selected=selected))
        self.dst.delete(rels_name(old.part))
        self._copy_rels(sheet.part, old.part)
        if old.name != sheet.name:
            old.element.set("name", sheet.name)
            self.dst.touch(self.dst_wb)
        self._move_local_names(sheet.index, old.index)

    def _append(self, sheet: SheetRef) -> None:
        dst_sheets = self.dst.sheets()
        part = self.dst.free_name("xl/worksheets/sheet1.xml", self.taken)
        self.dst.put_tree(part, self._sheet_xml(sheet, keep_selected=not dst_sheets))
        self.dst.set_content_type(part, self.src.content_type(sheet.part) or CT_WORKSHEET)
        self._copy_rels(sheet.part, part)
        rel_id = self._add_workbook_rel(RT_WORKSHEET, part)

        wb = self.dst.tree(self.dst_wb)
        sheets_el = wb.find(main_tag("sheets"))
        assert sheets_el is not None
        el = etree.SubElement(sheets_el, main_tag("sheet"), nsmap={"r": NS_R})
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
        rel.set("Target", relative_target(self.dst_wb, part))
        self.dst.touch(rels_part)
        return f"rId{k}"

    def _move_local_names(self, src_index: int, dst_index: int) -> None:
        """Sheet-local defined names (print area, print titles, filters) follow the sheet."""
        wb = self.dst.tree(self.dst_wb)
        names_el = wb.find(main_tag("definedNames"))
        if names_el is not None:
            for el in names_el.findall(main_tag("definedName")):
                if el.get("localSheetId") == str(dst_index):
                    names_el.remove(el)
                    self.dst.touch(self.dst_wb)
        src_names = self.src.tree(self.src_wb).find(main_tag("definedNames"))
        local = [] if src_names is None else [
            el for el in src_names.findall(main_tag("definedName"))
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
        src_names = self.src.tree(self.src_wb).find(main_tag("definedNames"))
        if src_names is None:
            return
        wb = self.dst.tree(self.dst_wb)
        names_el = wb.find(main_tag("definedNames"))
        taken = set() if names_el is None else {
            el.get("name", "").casefold()
            for el in names_el.findall(main_tag("definedName"))
            if el.get("localSheetId") is None
        }  # fmt: skip
        carried = [
            el
            for el in src_names.findall(main_tag("definedName"))
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
    pkg: PackageParts,
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
            info = zipfile.ZipInfo(part, date_time=old.date_time if old else NEW_PART_TIME)
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

    `out` defaults to `dst`. Sheet names match case-insensitively, as in Excel: a same-named
    sheet is replaced in place (same position, part name and sheetId), others are appended in
    the order given. Only the bookkeeping parts change: xl/workbook.xml (the <sheet> entry,
    sheet-local defined names such as print areas), its rels, [Content_Types].xml, xl/styles.xml
    (the formats the moved sheet needs, appended or reused), and xl/calcChain.xml, dropped when
    a sheet is replaced (Excel rebuilds it; stale entries make Excel "repair" the file). Every
    other part of `dst` stays byte-identical, cached values included.

    Choices: the moved sheet's shared strings become inline strings (sharedStrings.xml is never
    touched); cell formats keep number format, font, fill, border, alignment, protection and
    their named style (one of the same name in `dst` is used, any other added), and
    conditional-format dxf entries are copied; docProps/app.xml's title list is left stale
    (Excel and LibreOffice ignore it). A `dst` without a theme takes the source's, so charts
    that leave colours to the theme keep them; one with its own keeps it, as Excel does.
    Refused with a BpxlError: tables, pivot tables, slicers, timelines and threaded comments on
    a moved sheet, chartsheets, Strict OOXML, zip members whose names are absolute or hold
    "..", and relationships that point outside the package. Formulas, charts and defined names
    that point at sheets `dst` lacks are copied as they are. If `dst` does not exist, the
    sheets go into a minimal empty package (a byte copy of `src` when `names` are all of its
    sheets).
    """
    src, dst = Path(src), Path(dst)
    out = dst if out is None else Path(out)
    names = list(names)
    if not names:
        raise BpxlError("no sheet names given to transplant")
    folded = [n.casefold() for n in names]
    if len(set(folded)) != len(folded):
        raise BpxlError(f"sheet names given twice: {names}")

    with PackageParts.open(src, "source") as source:
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
        target = PackageParts.open(dst, "destination") if dst.exists() else PackageParts.skeleton()
        with PackageParts.open(src, "source") as source, target:
            transplant = _Transplant(source, target)
            for name in names:
                transplant.move(name)
            transplant.finish()
            write_package(target, tmp)


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
    names_el = etree.Element(main_tag("definedNames"))
    sheets_el = wb.find(main_tag("sheets"))
    assert sheets_el is not None
    sheets_el.addnext(names_el)
    return names_el


def build_package(
    template: bytes,
    out: Path,
    *,
    streams: Mapping[str, Callable[[bytes], Iterable[bytes]]],
    stream_level: int | None = None,
    application: str | None = None,
    carry_from: Path | None = None,
    carry: Sequence[str] = (),
    removed: Sequence[str] = (),
) -> list[str]:
    """Write the package `template` to `out` (not atomic), streaming sheets, carrying others.

    `template` is the package openpyxl saved, read once, as it is: its parts go to `out` with
    nothing that changes from run to run (see PackageParts.new, which `application` goes to).
    `streams` maps sheet titles of the template to functions that write their XML (see
    `write_package`). The sheets `carry` of workbook `carry_from` are appended, with what they
    need (see `transplant_sheets`), and so are its workbook-level defined names and its theme:
    both packages are read part by part, never held whole. Returns warnings: formulas, chart
    ranges and defined names carried over that refer to the sheets `removed`.
    """
    pkg = PackageParts.new(template, application)
    parts = {s.name: s.part for s in pkg.sheets()}
    by_part = {parts[title]: fn for title, fn in streams.items()}
    if carry_from is None or not carry:
        write_package(pkg, out, streams=by_part, stream_level=stream_level)
        return []
    with PackageParts.open(Path(carry_from), "workbook") as old:
        transplant = _Transplant(old, pkg, removed=removed)
        for name in carry:
            transplant.move(name)
        transplant.copy_workbook_names()
        transplant.use_source_theme()
        transplant.finish()
        write_package(pkg, out, streams=by_part, stream_level=stream_level)
    return transplant.warnings
