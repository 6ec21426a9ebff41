"""`bpxl build`: the workbook from the layout, every computed cell a live formula.

openpyxl builds everything a person sees first (Setup, the headers, iteration 0 of every table,
styles, charts, page setup); the rows after iteration 0 are streamed straight into the sheets'
XML from one pattern per row (xlsx/stream.py), in the style ids openpyxl gave iteration 0: the
same cells, ~10× faster than through openpyxl (benchmarks/bench_workbook.py). NumPy runs first
and its values go into the formula cells, so the file opens with numbers; a run that would
overflow is refused before anything is written.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from openpyxl import Workbook
from openpyxl.packaging.custom import StringProperty

from backprop_xlsx.errors import BpxlError
from backprop_xlsx.mlp import layout, summary_layout
from backprop_xlsx.mlp.config import check_runs_finish
from backprop_xlsx.mlp.description import Network
from backprop_xlsx.mlp.gradcheck import (
    DEFAULT_H,
    DEFAULT_THRESHOLD,
    GRADCHECK_SHEET,
    GradCheckLayout,
)
from backprop_xlsx.mlp.gradcheck_sheet import fill_gradcheck, gradcheck_stream
from backprop_xlsx.mlp.optim import HYPERPARAMETERS, hyper_keys
from backprop_xlsx.mlp.sheets import fill_lr_sheet, fill_setup, fill_summary, log_bounds
from backprop_xlsx.xlsx.facts import workbook_facts
from backprop_xlsx.xlsx.fileio import atomic_output, output_path, temp_folder
from backprop_xlsx.xlsx.parts import DuplicateSheetNames
from backprop_xlsx.xlsx.stream import FilledSheet, PatternRows
from backprop_xlsx.xlsx.transplant import build_package

SHEETS_PROPERTY = "bpxl.sheets"  # custom document property: JSON list of the sheets bpxl made

ZIP_LEVEL = 1  # deflate level for the streamed sheets: ~3× faster than 6, file ~25% larger


def build_workbook(
    network: Network,
    etas: Sequence[float],
    steps: int,
    out: Path,
    *,
    recalc: bool = False,
    warn: Callable[[str], None] | None = None,
    blank: frozenset[str] = frozenset(),
    optimizers: Sequence[str] = ("sgd",),
    hyper: Mapping[str, float] | None = None,
    gradient_check: bool = False,
) -> str:
    """Write the workbook to `out` atomically and return the lines the CLI prints.

    One training sheet per optimizer (optim.py; plain gradient descent by default) and learning
    rate; `hyper` sets hyperparameters by key (the others are torch.optim's defaults).

    Refused before anything is written: a learning rate whose run overflows, an `out` that is
    not an xlsx workbook (or not a regular file), and a sheet of `out` that bpxl did not make
    but whose name bpxl is about to write. An existing `out` is replaced only by a complete new
    file; the sheets bpxl did not make (an MNIST sheet, a user's notes) are carried over, and
    the lines say what was kept, replaced and removed. `warn` gets one line per carried formula
    that refers to a sheet this build removes (default: stderr). With `recalc`, LibreOffice
    computes and stores every value before the replace. With `gradient_check`, a Gradient
    check sheet checks the first LR sheet's gradients against central differences.
    """
    start = time.perf_counter()
    runs = _runs(network, etas, steps, optimizers, hyper)
    link, out = Path(out), output_path(out)
    titles = [
        layout.SETUP_SHEET,
        *(layout.sheet_title(o, e) for o in optimizers for e in etas),
        layout.summary_title(optimizers),
    ]
    checker = gradcheck_layout(runs[0], etas, steps) if gradient_check else None
    if checker is not None:
        titles.append(GRADCHECK_SHEET)
        checker.check_size()
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
    carry = {
        "carry_from": out,
        "carry": kept,
        "removed": removed,
        "blank": blank,
        "checker": checker,
    }
    try:
        with atomic_output(out) as tmp:
            if not recalc:
                warnings = write_workbook(runs, etas, steps, tmp, **carry)
            else:
                from backprop_xlsx.xlsx.libreoffice import recalculate

                with temp_folder("build") as work:
                    book = Path(work) / "book.xlsx"
                    warnings = write_workbook(runs, etas, steps, book, **carry)
                    recalculate(book, book, label=f"the new workbook for {link}")
                    shutil.copyfile(book, tmp)
    except OSError as exc:  # disk full, an I/O error: the old file is untouched
        raise BpxlError(f"cannot write {link}: {exc.strerror or exc}") from None
    for line in warnings:
        (warn or _stderr)(line)
    seconds = time.perf_counter() - start
    n = len(etas) * len(runs)
    formulas = sum(len(etas) * (steps + 1) * (len(r.sheet.columns) - len(blank)) for r in runs)
    where = f"{link} (→ {out})" if link != out else f"{link}"
    kind = "learning-rate" if list(optimizers) == ["sgd"] else "training"
    line = (
        f"wrote {where}: {n} {kind} sheet{'s' if n != 1 else ''} × {steps + 1:,} "
        f"iterations, {formulas:,} formulas"
    )
    if checker is not None:
        line += f", a gradient check of {checker.formulas:,} formulas"
    if recalc:
        line += ", values computed by LibreOffice"
    lines = [f"{line} ({seconds:.1f} s)"]
    if kept:
        lines.append(f"kept {', '.join(kept)} (sheet{'s' if len(kept) > 1 else ''} not by bpxl)")
    if replaced:
        lines.append(f"replaced {', '.join(replaced)}")
    others = [t for t in removed if t.casefold() != GRADCHECK_SHEET.casefold()]
    if others:
        lines.append(f"removed {', '.join(others)} (learning rates not asked for this time)")
    if len(others) < len(removed):
        lines.append(f"removed {GRADCHECK_SHEET} (no --gradient-check this time)")
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
        network: Network,
        etas: Sequence[float],
        steps: int,
        *,
        optimizer: str = "sgd",
        hyper: Mapping[str, float] | None = None,
    ) -> _Run:
        """Checked before anything is written: the size, and a run that never overflows.

        `optimizer` is this run's update rule, `hyper` every hyperparameter Setup shows."""
        sheet = layout.SheetLayout(network, optimizer=optimizer, hyper=hyper)
        layout.check_size(sheet, len(etas), steps)
        return cls(sheet, check_runs_finish(sheet, etas, steps))

    @property
    def e_total(self) -> np.ndarray:
        """The loss Error vs LR follows: E_total, or E_train with mini-batches."""
        return self.values[self.sheet.loss_key]

    def matrix(self, j: int) -> np.ndarray:
        """(steps + 1, columns): learning rate j's values in the sheet's column order."""
        return np.stack([self.values[c.key][:, j] for c in self.sheet.columns], axis=1)


def _runs(
    network: Network,
    etas: Sequence[float],
    steps: int,
    optimizers: Sequence[str],
    hyper: Mapping[str, float] | None,
) -> list[_Run]:
    """One run per optimizer, all with every hyperparameter the workbook's Setup shows."""
    shown = {k: (hyper or {}).get(k, HYPERPARAMETERS[k].default) for k in hyper_keys(optimizers)}
    sheet = layout.SheetLayout(network)
    columns = sum(
        len(layout.SheetLayout(network, optimizer=o, hyper=shown).columns) for o in optimizers
    )
    layout.check_size(sheet, len(etas), steps, columns)
    return [_Run.of(network, etas, steps, optimizer=o, hyper=shown) for o in optimizers]


def write_workbook(
    runs: Sequence[_Run],
    etas: Sequence[float],
    steps: int,
    path: Path,
    *,
    carry_from: Path | None = None,
    carry: Sequence[str] = (),
    removed: Sequence[str] = (),
    blank: frozenset[str] = frozenset(),
    checker: GradCheckLayout | None = None,
) -> list[str]:
    """Write the complete workbook to `path` (not atomic: build_workbook wraps it).

    Every formula cell also carries the value NumPy computed for it, for viewers that do not
    calculate; Excel and LibreOffice still recalculate on open. The sheets `carry` of
    `carry_from` are carried over (see package.build_package, whose warnings are returned).
    One training sheet per run (one per optimizer, made by `_runs`) and η; with `checker`, the
    Gradient check sheet it lays out.
    """
    optimizers = [r.sheet.optimizer.name for r in runs]
    sheet = runs[0].sheet
    training = [(r, j) for r in runs for j in range(len(etas))]
    titles = [layout.sheet_title(r.sheet.optimizer.name, etas[j]) for r, j in training]
    letters = [r.sheet.letter[r.sheet.loss_key] for r, _ in training]
    e_total = np.concatenate([r.e_total for r in runs], axis=1)  # (steps + 1, sheets)
    every_eta = [etas[j] for _, j in training]
    summary_title = layout.summary_title(optimizers)
    places = summary_layout.SummaryLayout(len(titles), steps)
    wb = Workbook()
    setup = wb.active
    setup.title = layout.SETUP_SHEET
    sheets = [wb.create_sheet(title) for title in titles]
    summary = wb.create_sheet(summary_title)
    check_ws = wb.create_sheet(GRADCHECK_SHEET) if checker is not None else None
    wb.calculation.fullCalcOnLoad = True  # Excel and LibreOffice compute everything on open
    record = json.dumps(wb.sheetnames, ensure_ascii=False)
    wb.custom_doc_props.append(StringProperty(name=SHEETS_PROPERTY, value=record))

    fill_setup(setup, sheet, titles, steps, letters, optimizers)
    for ws, (run, j) in zip(sheets, training, strict=True):
        losses = dict.fromkeys(("E_total", run.sheet.loss_key))  # a batch's and the whole set's
        charted = np.concatenate([run.values[key][:, j] for key in losses])
        fill_lr_sheet(ws, run.sheet, etas[j], steps, log_bounds(charted), blank)
    heading = (
        "Error vs learning rate"
        if summary_title == layout.SUMMARY_SHEET
        else ("Error by optimizer and learning rate")
    )
    bounds = log_bounds(e_total)
    fill_summary(summary, sheet, titles, places, bounds, letters, heading)
    if check_ws is not None:
        first, g = runs[0], checker
        row = {key: first.values[key][0, 0] for key in first.sheet.keys}
        setup_values = {e.key: e.value for e in sheet.setup}
        check_values = g.values(setup_values, *g.at_iteration(row), DEFAULT_H, DEFAULT_THRESHOLD)
        bulk = fill_gradcheck(check_ws, g, check_values)

    template = io.BytesIO()
    wb.save(template)
    streams = {layout.SETUP_SHEET: FilledSheet(_setup_values(e_total, every_eta)).stream}
    for title, (run, j) in zip(titles, training, strict=True):
        streams[title] = _lr_bulk(title, steps, run, j, blank).stream
    streams[summary_title] = _summary_bulk(
        titles, places, e_total, letters, every_eta, summary_title
    ).stream
    if check_ws is not None:
        streams[GRADCHECK_SHEET] = gradcheck_stream(bulk, check_values)
    return build_package(
        template.getvalue(),
        Path(path),
        streams=streams,
        stream_level=ZIP_LEVEL,
        application=layout.APPLICATION,  # verify: the cached values are NumPy's
        carry_from=carry_from,
        carry=carry,
        removed=removed,
    )


def gradcheck_layout(run: _Run, etas: Sequence[float], steps: int) -> GradCheckLayout:
    """The gradient-check sheet of this build: it checks the first training sheet (the first
    optimizer's, at the first learning rate)."""
    title = layout.sheet_title(run.sheet.optimizer.name, etas[0])
    return GradCheckLayout(run.sheet, title, steps)


def _formula_xml(formula: str, value: int | None = None) -> str:
    """A formula pattern (leading '=') as the inner XML of its cell, with value field `value`."""
    cached = "" if value is None else f"<v>{{v[{value}]}}</v>"
    return f"<f>{escape(formula[1:])}</f>{cached}"


def _lr_bulk(
    title: str, steps: int, run: _Run, j: int, blank: frozenset[str] = frozenset()
) -> PatternRows:
    """Iterations 1..N of an LR sheet; iteration 0's values go into openpyxl's row. The
    columns in `blank` (an exercise) are empty cells in the style of iteration 0's."""
    columns = run.sheet.columns
    cells = tuple(
        (c.letter, "" if c.key in blank else _formula_xml(c.pattern(), i))
        for i, c in enumerate(columns)
    )
    matrix = run.matrix(j)
    first = {
        f"{c.letter}{layout.FIRST_ROW}": matrix[0, i]
        for i, c in enumerate(columns)
        if c.key not in blank
    }
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
    return int(below[0]) if below.size else summary_layout.NEVER


def _summary_bulk(
    titles: list[str],
    s: summary_layout.SummaryLayout,
    e_total: np.ndarray,
    letters: Sequence[str],
    etas: Sequence[float],
    summary_title: str = layout.SUMMARY_SHEET,
) -> PatternRows:
    """Iterations 1..N of the E_total table: the iteration, then live references to each sheet
    (its E_total column `letters[j]`; e_total: (steps + 1, sheets)).

    `top` holds the values of the per-LR table and of iteration 0, computed as the cells do."""
    cells = [("A", "<v>{k}</v>")]
    for j, (title, letter) in enumerate(zip(titles, letters, strict=True)):
        ref = summary_layout.e_total_pattern(title, letter)
        cells.append((s.lr_column(j), _formula_xml(ref, j)))
    cols = summary_layout.SUMMARY_COLUMNS
    top: dict[str, float | str] = {}
    for j, eta in enumerate(etas):
        row = s.lr_row(j)
        top[f"{cols['eta']}{row}"] = eta
        top[f"{cols['final']}{row}"] = e_total[-1, j]
        top[f"{cols['first_below']}{row}"] = _first_below(
            e_total[:, j], summary_layout.DEFAULT_THRESHOLD
        )
        top[f"{s.lr_column(j)}{s.iteration_row(0)}"] = e_total[0, j]
    first = s.iteration_row(1)
    return PatternRows(
        summary_title,
        first,
        s.iteration_row(s.steps),
        1,
        tuple(cells),
        e_total[1:],
        top,
        layout.row_of_iteration(0),
    )


def _setup_values(e_total: np.ndarray, etas: Sequence[float]) -> dict[str, float]:
    """The Setup sheet's live list of training sheets: η and final E_total of each."""
    eta_col, _, final_col = layout.SETUP_LR_COLUMNS
    out: dict[str, float] = {}
    for j, eta in enumerate(etas):
        row = layout.setup_lr_row(j)
        out[f"{eta_col}{row}"] = eta
        out[f"{final_col}{row}"] = e_total[-1, j]
    return out
