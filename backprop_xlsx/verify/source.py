"""Where verify's values come from: the values cached in the file, or a LibreOffice copy.

A bpxl-written file holds NumPy's own values, which prove nothing about a spreadsheet, so the
engine is chosen from who saved the file (`choose_engine`). With LibreOffice, one recalculated
copy is read for every check (LR sheets, Setup, summary, the trained net's sheets); typed-in
constants keep the original's full precision (`merge_computed`).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from lxml import etree

from backprop_xlsx.cnn.check import check_cnn_sheets, has_cached_values, has_cnn_sheets
from backprop_xlsx.cnn.layout import SHEETS as CNN_SHEETS
from backprop_xlsx.errors import BpxlError
from backprop_xlsx.mlp import layout, summary_layout
from backprop_xlsx.report import Report
from backprop_xlsx.verify.lr_sheet import SETUP_VALUE_COL, LrSheet, read_lr_sheet
from backprop_xlsx.xlsx.facts import application
from backprop_xlsx.xlsx.formula import (
    cell_key,
    column_number,
)
from backprop_xlsx.xlsx.libreoffice import find_soffice, open_recalculated
from backprop_xlsx.xlsx.read import Cell, Package, merge_computed

# ---------------------------------------------------------------------------------------------
# The whole workbook


ENGINES = ("auto", "cached", "libreoffice")
# What a damaged package raises while its sheets are streamed (zipfile: RuntimeError for an
# encrypted part, NotImplementedError for a compression method it lacks).
CORRUPT = (
    etree.XMLSyntaxError, zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError,
    RuntimeError,
)  # fmt: skip


def read_setup_cells(pkg: Package, sheet: layout.SheetLayout) -> dict[tuple[int, int], Cell] | None:
    """The Setup sheet's cells that the checks read (its value column), or None if missing."""
    if layout.SETUP_SHEET not in pkg.parts:
        return None
    width, last = SETUP_VALUE_COL, max(sheet.setup_row.values())
    return pkg.cells(layout.SETUP_SHEET, width, last)


def network_cells(pkg: Package) -> dict[tuple[int, int], Cell] | None:
    """The Setup sheet's text describing the network (I:J), or None if there is no Setup."""
    if layout.SETUP_SHEET not in pkg.parts:
        return None
    width = column_number(layout.SETUP_NETWORK_COLUMNS[-1])
    last = layout.SETUP_FIRST_ROW + len(layout.NETWORK_FIELDS) + len(layout.BATCH_FIELDS) - 1
    return pkg.cells(layout.SETUP_SHEET, width, last)


def read_summary_cells(
    pkg: Package, sheets: list[LrSheet], title: str = layout.SUMMARY_SHEET
) -> dict[tuple[int, int], Cell] | None:
    """The cells the checks read of Error vs LR (or of Optimizers, its twin for optimizers):
    as many rows and columns as the LR sheets need."""
    if title not in pkg.parts:
        return None
    steps = max((s.rows - 1 for s in sheets), default=0)
    where = summary_layout.SummaryLayout(len(sheets), steps)
    width = max(
        [column_number(c) for c in summary_layout.SUMMARY_COLUMNS.values()]
        + [column_number(where.lr_column(j)) for j in range(len(sheets))]
    )
    last = max(
        where.iteration_row(steps),
        where.lr_row(len(sheets)),
        cell_key(summary_layout.THRESHOLD_CELL)[0],
    )
    cells: dict[tuple[int, int], Cell] = {}
    rows = pkg.grid(title, width)  # its table's rows are plain: read as text
    try:
        for line in rows:
            if line is None:  # the reader starts again
                cells = {}
                continue
            if line.row > last:
                break
            types = line.types or ["n"] * width
            cells.update(
                ((line.row, j + 1), Cell(line.formulas[j], line.values[j], kind))
                for j, kind in enumerate(types)
                if kind is not None
            )
    finally:
        rows.close()
    return cells


def choose_engine(pkg: Package, engine: str, sheets: list[LrSheet]) -> str:
    """The one source of every checked value: cached when the formula cells carry values (saved
    by Excel or LibreOffice; the trained net's sheets too, when there), else a LibreOffice
    recalculation of a copy; a clear error when neither can give values."""
    with_value = sum(int((s.has_value & s.has_formula).sum()) for s in sheets)
    formulas = sum(int(s.has_formula.sum()) for s in sheets)
    path = pkg.path
    if application(pkg) == layout.APPLICATION:
        # bpxl wrote NumPy's values itself: no evidence of what a spreadsheet computes
        with_value = 0
        if engine == "cached":
            raise BpxlError(
                f"{path} holds the values bpxl computed with NumPy when it wrote the file, not a "
                "spreadsheet's: use --engine libreoffice (or auto), or open and save it in Excel "
                "or LibreOffice first, or build it with `bpxl build --recalc`"
            )
    if engine == "cached" and formulas and with_value == 0:
        raise BpxlError(
            f"{path} has no cached values (it was never calculated and saved): use --engine "
            "libreoffice, or open and save it in Excel or LibreOffice, or build it with "
            "`bpxl build --recalc`"
        )
    cnn_cached = not has_cnn_sheets(pkg) or has_cached_values(pkg)
    if engine == "cached" or (engine == "auto" and with_value == formulas and cnn_cached):
        return "cached"
    if find_soffice() is None:
        raise BpxlError(
            f"{path} has no computed values to check and LibreOffice is not installed: install "
            "LibreOffice, or open and save the workbook in Excel or LibreOffice, or build it with "
            "`bpxl build --recalc`"
        )
    return "libreoffice"


def read_lr_sheets(
    pkg: Package, titles: list[str], layouts: Sequence[layout.SheetLayout]
) -> Iterator[LrSheet]:
    """The LR sheets in order, read two (or as many as there are cores) at a time.

    Reading is most of verify's time (measured on 6 × 10,000 steps, a quiet 2-core machine:
    4.3 of 5.8 s, regular expressions and float parsing over 310,000 cells a sheet) and the
    sheets are independent, so worker processes read them (fork, where there is one: nothing
    to import again); the checks stay in this process, in order, so findings and the random
    changed inputs are the same as when read one by one."""
    cores = os.cpu_count() or 1
    fork = "fork" in multiprocessing.get_all_start_methods()
    if len(titles) < 2 or cores < 2 or not fork:
        for title, sheet_layout in zip(titles, layouts, strict=True):
            yield read_lr_sheet(pkg, title, sheet_layout=sheet_layout)
        return
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=min(cores, len(titles)), mp_context=context) as pool:
        jobs = [
            pool.submit(_read_in_worker, str(pkg.path), t, sheet_layout)
            for t, sheet_layout in zip(titles, layouts, strict=True)
        ]
        for job in jobs:
            sheet, error = job.result()
            if error is not None:
                raise BpxlError(error)
            yield sheet


def _read_in_worker(
    path: str, title: str, sheet_layout: layout.SheetLayout
) -> tuple[LrSheet | None, str | None]:
    """One LR sheet, read in a worker process; a problem comes back as its one line."""
    try:
        pkg = Package(Path(path))
        try:
            return read_lr_sheet(pkg, title, sheet_layout=sheet_layout), None
        finally:
            pkg.close()
    except BpxlError as exc:
        return None, str(exc)
    except CORRUPT as exc:
        return None, f"cannot read {path}: a damaged xlsx ({type(exc).__name__}: {exc})"


def check_cnn(pkg: Package, engine: str, report: Report) -> None:
    """The trained net's sheets of a workbook without LR sheets, checked with values from the
    source `choose_engine` chose (`engine`): the file's cached ones or a LibreOffice copy's.
    (Beside LR sheets, `recalculated` checks them against its one copy.)"""
    with contextlib.ExitStack() as stack:
        complete = all(t in pkg.parts for t in CNN_SHEETS)  # else the check names what is missing
        recalc = engine == "libreoffice" and complete
        computed = open_recalculated(pkg.path, stack, "cnn") if recalc else None
        report.cnn = check_cnn_sheets(pkg, report, computed)


def recalculated(
    path: Path,
    sheets: list[LrSheet],
    setup_cells: dict[tuple[int, int], Cell] | None,
    summary_cells: dict[tuple[int, int], Cell] | None,
    original: Package,
    report: Report,
    summary_title: str = layout.SUMMARY_SHEET,
    others: dict[str, dict[tuple[int, int], Cell]] | None = None,
) -> tuple[dict | None, dict | None]:
    """Let LibreOffice compute a copy, and take every value from it. Constants typed into the
    original (Setup, η) keep their full precision: LibreOffice rounds what it saves to 15
    digits, but computed with the original's doubles. The trained net's sheets, when there,
    are checked against the same copy. The cells of the sheets in `others` (title → cells)
    are replaced, in place, by the copy's computed values too."""
    with contextlib.ExitStack() as stack:
        pkg = open_recalculated(path, stack)
        for sheet in sheets:
            fresh = read_lr_sheet(pkg, sheet.title, sheet.layout, with_formulas=False)
            if fresh.values.shape == sheet.values.shape:
                computed = sheet.has_formula
                sheet.values = np.where(computed, fresh.values, sheet.values)
                sheet.has_value = np.where(computed, fresh.has_value, sheet.has_value)
                sheet.odd_values = {
                    **{kj: v for kj, v in sheet.odd_values.items() if not computed[kj]},
                    **{kj: v for kj, v in fresh.odd_values.items() if computed[kj]},
                }
        if setup_cells is not None and layout.SETUP_SHEET in pkg.parts:
            setup_cells = merge_computed(setup_cells, read_setup_cells(pkg, sheets[0].layout) or {})
        if summary_cells is not None and summary_title in pkg.parts:
            fresh = read_summary_cells(pkg, sheets, summary_title) or {}
            summary_cells = merge_computed(summary_cells, fresh)
        for title, cells in (others or {}).items():
            if title in pkg.parts:
                others[title] = merge_computed(cells, pkg.cells(title))
        report.cnn = check_cnn_sheets(original, report, computed=pkg)
    return setup_cells, summary_cells
