"""Write the workbook from the layout: every computed cell a live formula, nothing precomputed.

openpyxl builds everything a person sees first (Setup, the headers, iteration 0 of every table,
styles, charts, page setup), but writing the bulk of the rows through openpyxl costs ~1 µs of
Python per cell and more with styles: 6 learning rates × 10,000 steps are 1.9 million formulas
(~22 s unstyled, XlsxWriter ~100 s, its formula preparation runs ~30 regexes per cell). So the
rows after iteration 0 are streamed straight into the sheets' XML from one str.format pattern per
row, reusing the style ids openpyxl gave iteration 0's cells: the same cells openpyxl would write,
~10× faster (see benchmarks/bench_workbook.py).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import re
import shutil
import sys
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from openpyxl import Workbook
from openpyxl.chart import Reference, ScatterChart
from openpyxl.packaging.custom import StringProperty
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import column_index_from_string, get_column_letter
from openpyxl.worksheet.formula import ArrayFormula
from openpyxl.worksheet.hyperlink import Hyperlink
from openpyxl.worksheet.worksheet import Worksheet

from backprop_xlsx.errors import BpxlError
from backprop_xlsx.mlp import description, layout, sheetview
from backprop_xlsx.mlp.config import check_runs_finish
from backprop_xlsx.mlp.description import Network
from backprop_xlsx.xlsx.fileio import atomic_output, output_path, temp_folder
from backprop_xlsx.xlsx.package import workbook_facts
from backprop_xlsx.xlsx.read import DuplicateSheetNames
from backprop_xlsx.xlsx.stream import FilledSheet, PatternRows
from backprop_xlsx.xlsx.transplant import build_package

MEANING = {
    "i1": "input 1",
    "i2": "input 2",
    "t1": "target of output 1",
    "t2": "target of output 2",
    "w1": "weight i1 → h1",
    "w2": "weight i2 → h1",
    "w3": "weight i1 → h2",
    "w4": "weight i2 → h2",
    "w5": "weight a_h1 → o1",
    "w6": "weight a_h2 → o1",
    "w7": "weight a_h1 → o2",
    "w8": "weight a_h2 → o2",
}

# (text, is a heading). Plain text cells: none may be read as a formula (see _text).
EQUATIONS: tuple[tuple[str, bool], ...] = (
    ("Forward pass, with σ(x) = 1/(1 + e^(−x))", True),
    ("h1 = w1·i1 + w2·i2        a_h1 = σ(h1)", False),
    ("h2 = w3·i1 + w4·i2        a_h2 = σ(h2)", False),
    ("o1 = w5·a_h1 + w6·a_h2    a_o1 = σ(o1)", False),
    ("o2 = w7·a_h1 + w8·a_h2    a_o2 = σ(o2)", False),
    ("Error", True),
    ("E1 = ½·(t1 − a_o1)²      E2 = ½·(t2 − a_o2)²      E_total = E1 + E2", False),
    ("Backward pass: the chain rule, with σ'(x) = σ(x)·(1 − σ(x))", True),
    ("∂E/∂w5 = ∂E/∂a_o1 · ∂a_o1/∂o1 · ∂o1/∂w5 = (a_o1 − t1)·a_o1·(1 − a_o1)·a_h1", False),
    ("∂E/∂w6 = ∂E/∂a_o1 · ∂a_o1/∂o1 · ∂o1/∂w6 = (a_o1 − t1)·a_o1·(1 − a_o1)·a_h2", False),
    ("∂E/∂w7 = ∂E/∂a_o2 · ∂a_o2/∂o2 · ∂o2/∂w7 = (a_o2 − t2)·a_o2·(1 − a_o2)·a_h1", False),
    ("∂E/∂w8 = ∂E/∂a_o2 · ∂a_o2/∂o2 · ∂o2/∂w8 = (a_o2 − t2)·a_o2·(1 − a_o2)·a_h2", False),
    ("Write δo1 = ∂E/∂o1 = (a_o1 − t1)·a_o1·(1 − a_o1) and δo2 = (a_o2 − t2)·a_o2·(1 − a_o2).", False),  # noqa: E501
    ("w1 reaches E_total along both paths, through o1 (via w5) and through o2 (via w7):", False),
    ("∂E/∂w1 = (∂E1/∂a_h1 + ∂E2/∂a_h1) · ∂a_h1/∂h1 · ∂h1/∂w1", False),
    ("          with ∂E1/∂a_h1 = δo1·w5 and ∂E2/∂a_h1 = δo2·w7, ∂a_h1/∂h1 = a_h1·(1 − a_h1), ∂h1/∂w1 = i1", False),  # noqa: E501
    ("∂E/∂w1 = (δo1·w5 + δo2·w7)·a_h1·(1 − a_h1)·i1", False),
    ("∂E/∂w2 = (δo1·w5 + δo2·w7)·a_h1·(1 − a_h1)·i2", False),
    ("∂E/∂w3 = (δo1·w6 + δo2·w8)·a_h2·(1 − a_h2)·i1", False),
    ("∂E/∂w4 = (δo1·w6 + δo2·w8)·a_h2·(1 − a_h2)·i2", False),
    ("Update: gradient descent, all eight weights at once", True),
    ("w ← w − η·∂E/∂w: each row's weights are the row above's minus η times its gradients.", False),
)  # fmt: skip

BOLD = Font(bold=True)
TITLE = Font(bold=True, size=14)
HEADER_FILL = PatternFill("solid", start_color="DDEBF7")
INPUT_FILL = PatternFill("solid", start_color="FFF2CC")  # cells a person is meant to edit
HEADER_BORDER = Border(bottom=Side(style="thin"))
CENTER = Alignment(horizontal="center", vertical="center", wrap_text=True)


SHEETS_PROPERTY = "bpxl.sheets"  # custom document property: JSON list of the sheets bpxl made

PRINT_ROWS = 40  # iterations of an LR sheet's table that go into its print area
PRINT_COLUMNS = 16  # columns of an LR sheet's table per printed page, at most
ZIP_LEVEL = 1  # deflate level for the streamed sheets: ~3× faster than 6, file ~25% larger


def build_workbook(
    network: Network | Mapping[str, float],
    etas: Sequence[float],
    steps: int,
    out: Path,
    *,
    recalc: bool = False,
    warn: Callable[[str], None] | None = None,
) -> str:
    """Write the workbook to `out` atomically and return the lines the CLI prints.

    Refused before anything is written: a learning rate whose run overflows, an `out` that is
    not an xlsx workbook (or not a regular file), and a sheet of `out` that bpxl did not make
    but whose name bpxl is about to write. An existing `out` is replaced only by a complete new
    file; the sheets bpxl did not make (an MNIST sheet, a user's notes) are carried over, and
    the lines say what was kept, replaced and removed. `warn` gets one line per carried formula
    that refers to a sheet this build removes (default: stderr). With `recalc`, LibreOffice
    computes and stores every value before the replace.
    """
    start = time.perf_counter()
    run = _Run.of(network, etas, steps)
    link, out = Path(out), output_path(out)
    titles = [layout.SETUP_SHEET, *(layout.lr_sheet_title(e) for e in etas), layout.SUMMARY_SHEET]
    old = existing_sheets(out)
    new = {t.casefold() for t in titles}
    if old is not None:
        for name in old.user:
            if name.casefold() in new:
                raise BpxlError(
                    f"refusing to replace {link}: its sheet {name!r} was not made by bpxl"
                    f"{old.note_short()}, and bpxl is about to write a sheet of that name; "
                    "rename that sheet, or give another --out"
                )
    kept = old.user if old else []
    replaced = [t for t in old.bpxl if t.casefold() in new] if old else []
    removed = [t for t in old.bpxl if t.casefold() not in new] if old else []
    if recalc:
        from backprop_xlsx.xlsx.libreoffice import NOT_INSTALLED, find_soffice

        if find_soffice() is None:
            raise BpxlError(NOT_INSTALLED)
    carry = {"carry_from": out, "carry": kept, "removed": removed}
    try:
        with atomic_output(out) as tmp:
            if not recalc:
                warnings = write_workbook(run, etas, steps, tmp, **carry)
            else:
                from backprop_xlsx.xlsx.libreoffice import recalculate

                with temp_folder("build") as work:
                    book = Path(work) / "book.xlsx"
                    warnings = write_workbook(run, etas, steps, book, **carry)
                    recalculate(book, book, label=f"the new workbook for {link}")
                    shutil.copyfile(book, tmp)
    except OSError as exc:  # disk full, an I/O error: the old file is untouched
        raise BpxlError(f"cannot write {link}: {exc.strerror or exc}") from None
    for line in warnings:
        (warn or _stderr)(line)
    seconds = time.perf_counter() - start
    n = len(etas)
    formulas = n * (steps + 1) * len(run.sheet.columns)
    where = f"{link} (→ {out})" if link != out else f"{link}"
    line = (
        f"wrote {where}: {n} learning-rate sheet{'s' if n != 1 else ''} × {steps + 1:,} "
        f"iterations, {formulas:,} formulas"
    )
    if recalc:
        line += ", values computed by LibreOffice"
    lines = [f"{line} ({seconds:.1f} s)"]
    if kept:
        lines.append(f"kept {', '.join(kept)} (sheet{'s' if len(kept) > 1 else ''} not by bpxl)")
    if replaced:
        lines.append(f"replaced {', '.join(replaced)}")
    if removed:
        lines.append(f"removed {', '.join(removed)} (learning rates not asked for this time)")
    if old is not None and old.legacy:
        lines.append(old.note())
    return "\n".join(lines)


def _stderr(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr)


@dataclass(frozen=True)
class ExistingSheets:
    """The sheets of a workbook about to be rebuilt: bpxl's (rebuilt or removed), the user's."""

    bpxl: list[str]
    user: list[str]
    legacy: bool  # no record of bpxl's sheets, but a Setup sheet bpxl wrote: an older bpxl
    path: str = ""

    def note(self) -> str:
        return (
            f"({self.path} has no record of the sheets bpxl made, as bpxl before 0.2 wrote "
            f"none; its Setup sheet is bpxl's, so {layout.SETUP_SHEET}, {layout.SUMMARY_SHEET} "
            "and every sheet named 'LR <number>' were taken for bpxl's)"
        )

    def note_short(self) -> str:
        return "" if self.bpxl or self.legacy else " (the workbook has no bpxl sheets)"


def existing_sheets(path: Path) -> ExistingSheets | None:
    """Which sheets of an existing workbook at `path` bpxl made; None if there is no file.

    bpxl's sheets are those its custom document property `bpxl.sheets` lists. A workbook
    without that record counts as one an older bpxl wrote only if its Setup sheet starts as
    bpxl's does; then Setup, Error vs LR and the `LR <number>` sheets are bpxl's. In any
    other workbook every sheet is the user's. Refuses (BpxlError) a file that is not an xlsx
    workbook, so a mistyped --out never replaces some other file.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise BpxlError(f"refusing to replace {path}: cannot read it ({exc.strerror})") from None
    header = f"A{layout.SETUP_HEADER_ROW}"
    try:
        facts = workbook_facts(path, [(layout.SETUP_SHEET, "A1"), (layout.SETUP_SHEET, header)])
    except DuplicateSheetNames as exc:
        raise BpxlError(f"refusing to replace {path}: {exc.reason}") from None
    except Exception:  # zip, XML, part errors: all mean the same to the user
        raise BpxlError(f"refusing to replace {path}: it is not an xlsx workbook") from None
    record = _sheets_record(facts.properties.get(SHEETS_PROPERTY))
    if record is not None:
        ours = {t.casefold() for t in record}
        bpxl = [t for t in facts.sheets if t.casefold() in ours]
        return ExistingSheets(bpxl, [t for t in facts.sheets if t not in bpxl], False, str(path))
    setup = facts.cells
    signed = (
        setup.get((layout.SETUP_SHEET, "A1"), "").startswith("bpxl: ")
        and setup.get((layout.SETUP_SHEET, header)) == "name"
    )
    if not signed:
        return ExistingSheets([], list(facts.sheets), False, str(path))
    bpxl = [t for t in facts.sheets if layout.is_bpxl_sheet(t)]
    return ExistingSheets(bpxl, [t for t in facts.sheets if t not in bpxl], True, str(path))


def _sheets_record(text: str | None) -> list[str] | None:
    """The titles in a `bpxl.sheets` property; None when there is none or it is not a list."""
    if text is None:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    if not isinstance(record, list) or not all(isinstance(t, str) for t in record):
        return None
    return record


@dataclass(frozen=True)
class _Run:
    """The network's sheet layout and NumPy's value of every column for every learning rate."""

    sheet: layout.SheetLayout
    values: dict[str, np.ndarray]  # key → (steps + 1, len(etas))

    @classmethod
    def of(
        cls,
        network: Network | Mapping[str, float] | _Run,
        etas: Sequence[float],
        steps: int,
        *,
        check: bool = True,
    ) -> _Run:
        """Checked before anything is written: the size, and a run that never overflows.

        `check=False` is for the tests' witness of what the check refuses."""
        if isinstance(network, _Run):
            return network
        if not isinstance(network, Network):
            network = description.seed(network)  # the seed's named values, i1 … w8
        sheet = layout.SheetLayout(network, classic=network.classic)
        layout.check_size(sheet, len(etas), steps)
        if not check:
            with np.errstate(all="ignore"):
                setup = {e.key: e.value for e in sheet.setup}
                return cls(sheet, sheet.run(setup, np.asarray(etas, np.float64), steps))
        return cls(sheet, check_runs_finish(sheet, etas, steps))

    @property
    def e_total(self) -> np.ndarray:
        return self.values["E_total"]

    def matrix(self, j: int) -> np.ndarray:
        """(steps + 1, columns): learning rate j's values in the sheet's column order."""
        return np.stack([self.values[c.key][:, j] for c in self.sheet.columns], axis=1)


def write_workbook(
    network: Network | Mapping[str, float] | _Run,
    etas: Sequence[float],
    steps: int,
    path: Path,
    *,
    carry_from: Path | None = None,
    carry: Sequence[str] = (),
    removed: Sequence[str] = (),
    check: bool = True,
) -> list[str]:
    """Write the complete workbook to `path` (not atomic: build_workbook wraps it).

    Every formula cell also carries the value NumPy computed for it, for viewers that do not
    calculate; Excel and LibreOffice still recalculate on open. The sheets `carry` of
    `carry_from` are carried over (see package.build_package, whose warnings are returned).
    """
    run = _Run.of(network, etas, steps, check=check)
    sheet = run.sheet
    titles = [layout.lr_sheet_title(eta) for eta in etas]
    summary_layout = layout.SummaryLayout(len(etas), steps)
    wb = Workbook()
    setup = wb.active
    setup.title = layout.SETUP_SHEET
    sheets = [wb.create_sheet(title) for title in titles]
    summary = wb.create_sheet(layout.SUMMARY_SHEET)
    wb.calculation.fullCalcOnLoad = True  # Excel and LibreOffice compute everything on open
    record = json.dumps(wb.sheetnames, ensure_ascii=False)
    wb.custom_doc_props.append(StringProperty(name=SHEETS_PROPERTY, value=record))

    _fill_setup(setup, sheet, titles, steps)
    for j, (ws, eta) in enumerate(zip(sheets, etas, strict=True)):
        _fill_lr_sheet(ws, sheet, eta, steps, _log_bounds(run.e_total[:, j]))
    _fill_summary(summary, sheet, titles, summary_layout, _log_bounds(run.e_total))

    template = io.BytesIO()
    wb.save(template)
    streams = {layout.SETUP_SHEET: FilledSheet(_setup_values(run, etas, steps)).stream}
    for j, title in enumerate(titles):
        streams[title] = _lr_bulk(title, steps, run, j).stream
    streams[layout.SUMMARY_SHEET] = _summary_bulk(titles, summary_layout, run, etas).stream
    return build_package(
        reproducible(template.getvalue()),
        Path(path),
        streams=streams,
        stream_level=ZIP_LEVEL,
        carry_from=carry_from,
        carry=carry,
        removed=removed,
    )


# --- the sheets -------------------------------------------------------------------------------


def _text(ws: Worksheet, coordinate: str, text: str, font: Font | None = None) -> None:
    """A text cell that stays text even if it starts with '=' (openpyxl would make a formula)."""
    cell = ws[coordinate]
    cell.value = text
    cell.data_type = "s"
    if font is not None:
        cell.font = font


def _sheet_link(ws: Worksheet, coordinate: str, title: str) -> None:
    """The sheet's name, linking to its first cell (an in-workbook link, no relationship)."""
    _text(ws, coordinate, title)
    cell = ws[coordinate]
    cell.hyperlink = Hyperlink(ref=coordinate, location=f"{layout.sheet_ref(title)}!A1")
    cell.style = "Hyperlink"


def _header(ws: Worksheet, row: int, labels: Sequence[str], first_column: int = 1) -> None:
    for k, label in enumerate(labels):
        coordinate = f"{get_column_letter(first_column + k)}{row}"
        _text(ws, coordinate, label, BOLD)
        cell = ws[coordinate]
        cell.fill, cell.border, cell.alignment = HEADER_FILL, HEADER_BORDER, CENTER


def _lr_entry(
    ws: Worksheet, row: int, columns: Sequence[str], title: str, steps: int, letter: str
) -> None:
    """η | sheet | final E_total of one LR sheet, live: on Setup and on Error vs LR alike.

    `letter` is the E_total column of the LR sheets."""
    eta_col, sheet_col, final_col = columns
    ws[f"{eta_col}{row}"] = layout.eta_ref(title)
    _sheet_link(ws, f"{sheet_col}{row}", title)
    ws[f"{final_col}{row}"] = layout.final_e_total_ref(title, steps, letter)
    ws[f"{final_col}{row}"].number_format = layout.FORMAT_SMALL


def _page_setup(ws: Worksheet, areas: list[str], pages_wide: int, title_rows: str | None) -> None:
    """Landscape A4, scaled to `pages_wide` pages across, each print area on its own pages."""
    ws.page_setup.orientation = "landscape"
    ws.page_setup.paperSize = ws.PAPERSIZE_A4
    ws.page_setup.fitToWidth = pages_wide
    ws.page_setup.fitToHeight = 0  # as many pages down as needed
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    ws.print_area = areas
    if title_rows:
        ws.print_title_rows = title_rows


def _log_bounds(e_total: np.ndarray) -> tuple[float, float] | None:
    """Fixed bounds for the log axis when E_total reaches exactly 0, else None (auto).

    Large learning rates drive E_total to exactly 0 after some hundred steps; LibreOffice then
    draws an empty chart on an auto-scaled log axis, but with fixed bounds it draws the line up
    to the zero and ends it there. Auto-scaling is kept otherwise, as it follows later edits of
    the Setup values; the bounds come from NumPy's run of the same values, whole decades.
    """
    positive = e_total[e_total > 0]
    if positive.size == 0 or positive.size == e_total.size:
        return None
    low, high = np.log10(positive.min()), np.log10(positive.max())
    return 10.0 ** math.floor(low), 10.0 ** math.ceil(high)


def _chart_area(anchor_column: int, anchor_row: int, chart: ScatterChart) -> str:
    """The cells a chart covers (roughly: default column width and row height), to print it."""
    columns = round(chart.width / 1.7) + 1
    rows = round(chart.height / 0.53) + 1
    last = get_column_letter(anchor_column + columns)
    return f"{get_column_letter(anchor_column)}{anchor_row}:{last}{anchor_row + rows}"


def _fill_setup(ws: Worksheet, sheet: layout.SheetLayout, titles: list[str], steps: int) -> None:
    _text(
        ws,
        "A1",
        f"bpxl: {network_title(sheet)} trained by gradient descent in live formulas",
        TITLE,
    )
    _text(
        ws,
        "A2",
        "Change any value in column B: every learning-rate sheet and Error vs LR recompute.",
    )
    _header(ws, layout.SETUP_HEADER_ROW, ["name", "value", "meaning"])
    for entry in sheet.setup:
        row = sheet.setup_row[entry.key]
        _text(ws, f"A{row}", entry.name, BOLD)
        cell = ws[f"{layout.SETUP_VALUE_COLUMN}{row}"]
        cell.value = entry.value
        cell.fill = INPUT_FILL
        _text(ws, f"C{row}", entry.meaning)

    first = column_index_from_string(layout.SETUP_LR_COLUMNS[0])
    _header(ws, layout.SETUP_LR_HEADER_ROW, ["η", "sheet", "final E_total"], first)
    letter = sheet.letter["E_total"]
    for j, title in enumerate(titles):
        _lr_entry(ws, layout.setup_lr_row(j), layout.SETUP_LR_COLUMNS, title, steps, letter)

    label, value = layout.SETUP_NETWORK_COLUMNS
    _header(ws, layout.SETUP_HEADER_ROW, ["network", ""], column_index_from_string(label))
    for k, (name, text) in enumerate(network_fields(sheet).items()):
        row = layout.SETUP_FIRST_ROW + k
        _text(ws, f"{label}{row}", name, BOLD)
        _text(ws, f"{value}{row}", text)

    start = layout.setup_equations_row(len(sheet.setup))
    row = start
    for text, heading in EQUATIONS if sheet.classic else general_equations(sheet):
        if heading and row > start:
            row += 1
        _text(ws, f"A{row}", text, BOLD if heading else None)
        row += 1

    widths = {"A": 12, "B": 12, "C": 22, "D": 3, "E": 8, "F": 12, "G": 16, "H": 3, "I": 12}
    for col, width in (widths | {"J": 30}).items():
        ws.column_dimensions[col].width = width
    _page_setup(ws, [f"A1:J{row}"], 1, None)


def network_title(sheet: layout.SheetLayout) -> str:
    """ "a 2-2-2 sigmoid network", "a 2-3-1 network (sigmoid, sigmoid; mse; biases trained)"."""
    net = sheet.network
    shape = "-".join(map(str, net.net.layers))
    if sheet.classic:
        return f"a {shape} sigmoid network"
    bias = {"none": "no biases", "trained": "biases trained", "fixed": "biases fixed"}[net.bias]
    return f"a {shape} network ({', '.join(net.net.activations)}; {net.net.loss}; {bias})"


def network_fields(sheet: layout.SheetLayout) -> dict[str, str]:
    """What the network is, as text on Setup; `bpxl verify` reads it back from there."""
    net = sheet.network
    bias = {"none": "false", "trained": "true", "fixed": "fixed"}[net.bias]
    fields = {
        "preset": net.preset or "(own file)",
        "layers": ", ".join(map(str, net.net.layers)),
        "activations": ", ".join(net.net.activations),
        "loss": net.net.loss,
        "bias": bias,
        "samples": str(net.samples),
        "layout": "classic" if sheet.classic else "general",
    }
    assert tuple(fields) == layout.NETWORK_FIELDS
    return fields


def _math(template: str) -> str:
    """A formula template as a line of math: {a_h1} → a_h1, d_o1 → δo1, * → ·, ^2 → ²."""
    text = re.sub(r"\{(?:setup |prev )?(\w+)\}", r"\1", template.lstrip("="))
    text = re.sub(r"\bd_(\w+)", r"δ\1", text)
    text = re.sub(r"\bdE_d(\w+)", r"∂E/∂\1", text)
    for code, shown in (("*", "·"), ("^2", "²"), ("-", " − "), ("+", " + "), ("EXP", "exp")):
        text = text.replace(code, shown)
    return text.replace("( − ", "(−").replace("TANH", "tanh").replace("LN", "ln")


def general_equations(sheet: layout.SheetLayout) -> list[tuple[str, bool]]:
    """The equations of this network, written from the same templates as its formulas.

    Shown for one sample; with several, every per-sample name carries the sample, x⁽ˢ⁾."""
    one = layout.SheetLayout(replace_samples(sheet.network), classic=False)
    net = one.network.net
    lines: list[tuple[str, bool]] = [
        ("Forward pass: z = W·a_prev + b, a = f(z), layer by layer", True)
    ]
    for layer in range(one.depth):
        for name in one.names[layer + 1]:
            z, a = one.templates[name][0], one.templates[f"a_{name}"][0]
            lines.append((f"{name} = {_math(z)}        a_{name} = {_math(a)}", False))
    lines.append((f"Error ({net.loss}), summed over outputs and samples", True))
    terms = [k for k in one.keys if re.fullmatch(r"E\d+", k)]
    for key in terms:
        lines.append((f"{key} = {_math(one.templates[key][0])}", False))
    lines.append(
        (
            "E_total = "
            + (f"Σ over the samples s of ({' + '.join(terms)})⁽ˢ⁾" if sheet.samples > 1 else "")
            + (" + ".join(terms) if sheet.samples == 1 else ""),
            False,
        )
    )
    backward = "Backward pass: δ = ∂E/∂z from the loss at the output, then (W_nextᵀ·δ_next)·f′(z)"
    lines.append((backward, True))
    for layer in range(one.depth - 1, -1, -1):
        for name in one.names[layer + 1]:
            lines.append((f"δ{name} = {_math(one.templates['d_' + name][0])}", False))
    lines.append(("Gradients: ∂E/∂w = δ of the receiving neuron · a of the sending one", True))
    grads = [k for k in one.keys if k.startswith("dE_d")]
    for key in grads:
        lines.append((f"∂E/∂{key[4:]} = {_math(one.templates[key][0])}", False))
    if sheet.samples > 1:
        lines.append(
            (
                f"With {sheet.samples} samples each gradient is the sum of every sample's: "
                "x⁽ˢ⁾ is x for training sample s (the per-sample columns carry ⁽ˢ⁾).",
                False,
            )
        )
    update = "every weight and bias" if sheet.network.bias == "trained" else "every weight"
    if sheet.network.bias == "fixed":
        update += " (the biases are fixed: used, never updated)"
    lines.append((f"Update: gradient descent on {update}, all at once", True))
    step = "w ← w − η·∂E/∂w: each row's parameters are the row above's minus η times its gradient"
    lines.append((step, False))
    return lines


def replace_samples(network: Network) -> Network:
    """The same network with its first sample only: the equations are each sample's."""
    return dataclasses.replace(network, inputs=network.inputs[:1], targets=network.targets[:1])


def _fill_lr_sheet(
    ws: Worksheet,
    sheet: layout.SheetLayout,
    eta: float,
    steps: int,
    bounds: tuple[float, float] | None,
) -> None:
    """η in row 1, the charts in the band of row 2, the header in row 3, one iteration a row;
    frozen at the header and the iteration and input columns (see sheetview)."""
    _text(ws, "A1", "η", BOLD)
    ws["A1"].alignment = Alignment(horizontal="right")
    eta_cell = ws[layout.ETA_CELL]
    eta_cell.value = float(eta)
    eta_cell.fill = INPUT_FILL
    eta_cell.font = BOLD
    note = (
        "Each row is one gradient-descent step: w ← w − η·∂E/∂w with the gradients of the row "
        "above. Iteration 0 holds the initial weights from Setup."
    )
    if sheet.samples > 1:
        note += f" Each step is one full batch of all {sheet.samples} samples"
        note += "; x⁽ˢ⁾ is x of sample s."
    frozen = sheetview.frozen_columns(sheet)
    if sheetview.frozen_width(sheet) >= sheetview.NOTE_WIDTH:  # under η, left of the charts
        _text(ws, "C1", "learning rate: change it and this sheet recomputes")
        note_cell = f"A{sheetview.NOTE_ROW}"
        _text(ws, note_cell, note)
        ws[note_cell].alignment = Alignment(wrap_text=True, vertical="top")
        ws.merge_cells(f"{note_cell}:{get_column_letter(frozen)}{sheetview.NOTE_ROW}")
    else:  # a narrow frozen strip: the note goes on η's line
        _text(ws, "C1", f"learning rate: change it and this sheet recomputes. {note}")
    ws.row_dimensions[sheetview.CHART_ROW].height = sheetview.CHART_ROW_HEIGHT
    columns = sheet.columns
    _header(ws, layout.HEADER_ROW, [c.header for c in columns])
    for column in columns:
        cell = ws[f"{column.letter}{layout.FIRST_ROW}"]
        cell.value = column.formula(layout.FIRST_ROW)
        cell.number_format = column.number_format
        ws.column_dimensions[column.letter].width = sheetview.column_width(column)
    ws[f"{sheet.letter[layout.ITERATION]}{layout.FIRST_ROW}"].font = BOLD
    ws.freeze_panes = sheetview.freeze_cell(sheet)
    sheetview.lr_charts(ws, sheet, eta, steps, bounds)

    last = layout.last_row(steps)
    right = max(len(columns), sheetview.charts_end_column(sheet))
    areas = [f"A1:{get_column_letter(right)}{min(last, layout.FIRST_ROW + PRINT_ROWS)}"]
    # about 16 columns a page across, so a wide general sheet still prints readably (seed: 2)
    pages_wide = max(2, math.ceil(len(columns) / PRINT_COLUMNS))
    _page_setup(ws, areas, pages_wide, f"{layout.HEADER_ROW}:{layout.HEADER_ROW}")
    if frozen:
        ws.print_title_cols = f"A:{get_column_letter(frozen)}"


def _fill_summary(
    ws: Worksheet,
    sheet: layout.SheetLayout,
    titles: list[str],
    s: layout.SummaryLayout,
    bounds: tuple[float, float] | None,
) -> None:
    _text(ws, "A1", "Error vs learning rate", TITLE)
    threshold_row = int(re.sub(r"\D", "", layout.THRESHOLD_CELL))
    _text(ws, f"A{threshold_row}", "threshold", BOLD)
    cell = ws[layout.THRESHOLD_CELL]
    cell.value = layout.DEFAULT_THRESHOLD
    cell.fill = INPUT_FILL
    cell.number_format = "0.0E+00"
    # The instruction wraps within the tables' columns, so neither screen nor print cuts it.
    last_column = max(len(titles) + 1, len(layout.SUMMARY_COLUMNS))
    widths = {"A": 14, "B": 14, "C": 14, "D": 17} | {
        get_column_letter(k + 1): 14 for k in range(4, last_column)
    }
    for col, width in widths.items():
        ws.column_dimensions[col].width = width
    instruction = "change it: the first iteration with E_total below it is found again for every η"
    _text(ws, f"C{threshold_row}", instruction)
    ws[f"C{threshold_row}"].alignment = Alignment(wrap_text=True, vertical="center")
    for label in (f"A{threshold_row}", layout.THRESHOLD_CELL):
        ws[label].alignment = Alignment(vertical="center")
    ws.merge_cells(f"C{threshold_row}:{get_column_letter(last_column)}{threshold_row}")
    room = sum(widths[get_column_letter(k)] for k in range(3, last_column + 1)) - 2
    ws.row_dimensions[threshold_row].height = 15 * math.ceil(len(instruction) / room)

    cols = layout.SUMMARY_COLUMNS
    _header(
        ws,
        layout.SUMMARY_HEADER_ROW,
        ["η", "sheet", "final E_total", "first iteration below threshold"],
    )
    ws.row_dimensions[layout.SUMMARY_HEADER_ROW].height = 30
    e_format = layout.FORMAT_SMALL
    letter = sheet.letter["E_total"]
    for j, title in enumerate(titles):
        row = s.lr_row(j)
        _lr_entry(ws, row, (cols["eta"], cols["sheet"], cols["final"]), title, s.steps, letter)
        ws[f"{cols['eta']}{row}"].alignment = Alignment(horizontal="center")
        first_below = f"{cols['first_below']}{row}"
        ws[first_below] = ArrayFormula(first_below, s.first_below_formula(j))
        ws[first_below].alignment = Alignment(horizontal="right")

    _header(ws, s.table_header_row, ["iteration", *titles])
    first = s.iteration_row(0)
    ws[f"A{first}"] = 0
    for j, title in enumerate(titles):
        cell = ws[f"{s.lr_column(j)}{first}"]
        cell.value = layout.e_total_ref(title, 0, letter)
        cell.number_format = e_format

    chart = sheetview.e_total_chart(
        "E_total against iteration, one line per learning rate", s.steps, bounds
    )
    chart.height, chart.width = 10, 18
    last = s.iteration_row(s.steps)
    x = Reference(ws, min_col=1, min_row=first, max_row=last)
    columns = [column_index_from_string(s.lr_column(j)) for j in range(len(titles))]
    sheetview.add_lines(chart, ws, x, columns, s.table_header_row, last)
    chart.legend.position = "r"
    chart.legend.txPr = sheetview.small_text()
    # Frozen above the first iteration: the per-LR table and the header of the iteration table
    # stay in view while the iterations scroll. The chart sits below the frozen rows, beside the
    # iterations, so it scrolls whole instead of being cut by the split.
    ws.freeze_panes = f"A{first}"
    anchor_column = max(len(titles) + 3, 6)
    chart_row = first
    ws.add_chart(chart, f"{get_column_letter(anchor_column)}{chart_row}")

    # Every column of both tables: the per-LR table alone reaches D (first below threshold).
    table = f"A1:{get_column_letter(last_column)}{min(last, s.iteration_row(PRINT_ROWS))}"
    chart_area = _chart_area(anchor_column, chart_row, chart)
    _page_setup(ws, [chart_area, table], 1, None)


def _formula_xml(formula: str, value: int | None = None) -> str:
    """A formula pattern (leading '=') as the inner XML of its cell, with value field `value`."""
    cached = "" if value is None else f"<v>{{v[{value}]}}</v>"
    return f"<f>{escape(formula[1:])}</f>{cached}"


def _lr_bulk(title: str, steps: int, run: _Run, j: int) -> PatternRows:
    """Iterations 1..N of an LR sheet; iteration 0's values go into openpyxl's row."""
    columns = run.sheet.columns
    cells = tuple((c.letter, _formula_xml(c.pattern(), i)) for i, c in enumerate(columns))
    matrix = run.matrix(j)
    first = {f"{c.letter}{layout.FIRST_ROW}": matrix[0, i] for i, c in enumerate(columns)}
    return PatternRows(
        title,
        layout.FIRST_ROW + 1,
        layout.last_row(steps),
        1,
        cells,
        matrix[1:],
        first,
        layout.row_of_iteration(0),
    )


def _first_below(e_total: np.ndarray, threshold: float) -> int | str:
    """What the first-below cell computes: the first iteration with E_total < threshold."""
    below = np.flatnonzero(e_total < threshold)
    return int(below[0]) if below.size else layout.NEVER


def _summary_bulk(
    titles: list[str], s: layout.SummaryLayout, run: _Run, etas: Sequence[float]
) -> PatternRows:
    """Iterations 1..N of the E_total table: the iteration, then live references to each sheet.

    `top` holds the values of the per-LR table and of iteration 0, computed as the cells do."""
    letter = run.sheet.letter["E_total"]
    cells = [("A", "<v>{k}</v>")]
    for j, title in enumerate(titles):
        # layout.e_total_ref(title, k) with the row left open, e.g. ='LR 0.1'!W{s}
        ref = re.sub(r"\d+$", "{s}", layout.e_total_ref(title, 0, letter))
        cells.append((s.lr_column(j), _formula_xml(ref, j)))
    cols = layout.SUMMARY_COLUMNS
    e_total = run.e_total
    top: dict[str, float | str] = {}
    for j, eta in enumerate(etas):
        row = s.lr_row(j)
        top[f"{cols['eta']}{row}"] = eta
        top[f"{cols['final']}{row}"] = e_total[-1, j]
        top[f"{cols['first_below']}{row}"] = _first_below(e_total[:, j], layout.DEFAULT_THRESHOLD)
        top[f"{s.lr_column(j)}{s.iteration_row(0)}"] = e_total[0, j]
    first = s.iteration_row(1)
    return PatternRows(
        layout.SUMMARY_SHEET,
        first,
        s.iteration_row(s.steps),
        1,
        tuple(cells),
        e_total[1:],
        top,
        layout.row_of_iteration(0),
    )


def _setup_values(run: _Run, etas: Sequence[float], steps: int) -> dict[str, float]:
    """The Setup sheet's live list of learning rates: η and final E_total of each sheet."""
    eta_col, _, final_col = layout.SETUP_LR_COLUMNS
    out: dict[str, float] = {}
    for j, eta in enumerate(etas):
        row = layout.setup_lr_row(j)
        out[f"{eta_col}{row}"] = eta
        out[f"{final_col}{row}"] = run.e_total[-1, j]
    return out


# --- reproducible packages --------------------------------------------------------------------

_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the zip format's earliest date: no build time in the file


def reproducible(package: bytes) -> bytes:
    """openpyxl's package without what changes from run to run: zip dates, the created and
    modified times of docProps/core.xml; and docProps/app.xml naming bpxl as the application, so
    `bpxl verify` knows the cached values are NumPy's and recalculates in a real engine."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(package)) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "docProps/core.xml":
                data = re.sub(rb"<dcterms:(created|modified)\b.*?</dcterms:\1>", b"", data)
            elif info.filename == "docProps/app.xml":
                data = re.sub(
                    rb"<Application>.*?</Application>",
                    f"<Application>{layout.APPLICATION}</Application>".encode(),
                    data,
                )
            fixed = zipfile.ZipInfo(info.filename, date_time=_FIXED_TIME)
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = info.external_attr
            zout.writestr(fixed, data)
    return out.getvalue()
