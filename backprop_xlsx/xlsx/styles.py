"""Cell formats of a moved sheet, appended to or reused from the destination's styles.xml.

A moved sheet's style indexes point into its source's styles.xml; each format it uses (number
format, font, fill, border, named cell style, conditional-format dxf) is found in or appended to
the destination's, memoised, so the destination's existing indexes never change.
"""

from __future__ import annotations

import copy

from lxml import etree

from backprop_xlsx.errors import BpxlError
from backprop_xlsx.xlsx.package import RT_STYLES, STYLE_ORDER, PackageParts, canonical, main_tag


class Styles:
    """Maps cell-format indices of the source styles.xml onto the destination's, appending."""

    def __init__(self, src: PackageParts, dst: PackageParts) -> None:
        self.src, self.dst = src, dst
        self.src_root = self._load(src)
        self.dst_part = dst.workbook_rel(RT_STYLES)
        self.dst_root = dst.tree(self.dst_part) if self.dst_part else None
        self._memo: dict[tuple[str, int], int] = {}

    @staticmethod
    def _load(pkg: PackageParts) -> etree._Element | None:
        part = pkg.workbook_rel(RT_STYLES)
        return pkg.tree(part) if part else None

    def _section(self, root: etree._Element, tag: str, create: bool) -> etree._Element | None:
        found = root.find(main_tag(tag))
        if found is not None or not create:
            return found
        el = etree.Element(main_tag(tag))
        later = STYLE_ORDER[STYLE_ORDER.index(tag) + 1 :]
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
        items = sec.findall(main_tag(child))
        key = canonical(el)
        for i, existing in enumerate(items):
            if canonical(existing) == key:
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
            []
            if self.src_root is None
            else self.src_root.findall(f"{main_tag(section)}/{main_tag(child)}")
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
        styles = self.src_root.findall(f"{main_tag('cellStyles')}/{main_tag('cellStyle')}")
        style = next((el for el in styles if el.get("xfId") == str(index)), None)
        records = self.src_root.findall(f"{main_tag('cellStyleXfs')}/{main_tag('xf')}")
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
                result = len(section.findall(main_tag("xf")))
                section.append(record)  # never shared: each named style has its own record
                section.set("count", str(result + 1))
                entry = copy.deepcopy(style)
                entry.set("xfId", str(result))
                named.append(entry)
                named.set("count", str(len(named.findall(main_tag("cellStyle")))))
                self.dst.touch(self.dst_part or "")
        self._memo[memo_key] = result
        return result

    def _remap_dxf(self, dxf: etree._Element) -> None:
        fmt = dxf.find(main_tag("numFmt"))
        if fmt is not None and fmt.get("formatCode") is not None:
            fmt.set("numFmtId", str(self._numfmt_code(fmt.get("formatCode", ""))))

    def _numfmt(self, fmt_id: int) -> int:
        if self.src_root is not None:
            for el in self.src_root.iterfind(f"{main_tag('numFmts')}/{main_tag('numFmt')}"):
                if el.get("numFmtId") == str(fmt_id):
                    return self._numfmt_code(el.get("formatCode", ""))
        return fmt_id  # a built-in format: same id everywhere

    def _numfmt_code(self, code: str) -> int:
        root = self._require_dst()
        sec = self._section(root, "numFmts", create=True)
        assert sec is not None
        ids = []
        for el in sec.findall(main_tag("numFmt")):
            if el.get("formatCode") == code:
                return int(el.get("numFmtId", "0"))
            ids.append(int(el.get("numFmtId", "0")))
        new_id = max([163, *ids]) + 1
        el = etree.SubElement(sec, main_tag("numFmt"))
        el.set("numFmtId", str(new_id))
        el.set("formatCode", code)
        sec.set("count", str(len(ids) + 1))
        self.dst.touch(self.dst_part or "")
        return new_id

    def xf(self, index: int) -> int:
        return 0 if index == 0 else self._copy("cellXfs", "xf", index)

    def dxf(self, index: int) -> int:
        return self._copy("dxfs", "dxf", index)
