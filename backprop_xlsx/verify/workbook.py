"""`bpxl verify`: prove a workbook's numbers and formulas right, independently of how it was made.

`verify_workbook` reads the network from the workbook itself, then runs, over one source of
values (source): the training sheets' formula check (lr_formulas; mini-batch schedule: batches)
and value check (lr_values, up to where rounding decides: conditioning), the comparison sheet's
(summary), the Gradient check sheet's (gradcheck) and the trained net's sheets' (cnn.check).
The workbook is untrusted: whatever it holds ends as a finding (exit 1) or a BpxlError (it
cannot be checked: exit 2), never as an exception of another kind; 0 means every check passed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backprop_xlsx.cnn.check import check_cnn_sheets
from backprop_xlsx.errors import BpxlError
from backprop_xlsx.mlp import gradcheck as G
from backprop_xlsx.mlp import layout
from backprop_xlsx.report import ATOL, INPUT_SEED, RTOL, Finding, Report, SheetStats
from backprop_xlsx.verify.batches import check_schedule, read_schedule_cells
from backprop_xlsx.verify.conditioning import reproducible_until
from backprop_xlsx.verify.gradcheck import check_gradcheck, read_gradcheck_cells
from backprop_xlsx.verify.lr_formulas import check_formulas, check_structure, with_iteration_column
from backprop_xlsx.verify.lr_sheet import LrSheet
from backprop_xlsx.verify.lr_values import check_values, expected_runs, read_network, read_setup
from backprop_xlsx.verify.optimizers import optimizer_layouts
from backprop_xlsx.verify.progress import QUIET, Progress
from backprop_xlsx.verify.source import (
    CORRUPT,
    ENGINES,
    check_cnn,
    choose_engine,
    network_cells,
    read_lr_sheets,
    read_setup_cells,
    read_summary_cells,
    recalculated,
)
from backprop_xlsx.verify.summary import check_summary
from backprop_xlsx.xlsx.read import Package

# verify's steps, as shares of its time (2-16-16-1, 20 samples: about these on 2 cores)
SHARE_READ, SHARE_FORMULAS, SHARE_RECALC, SHARE_VALUES = 0.35, 0.25, 0.3, 0.1


def verify_workbook(
    path: Path | str,
    engine: str = "auto",
    *,
    rtol: float = RTOL,
    atol: float = ATOL,
    progress: Progress = QUIET,
) -> Report:
    """Check every LR sheet's values and formulas, and the Error vs LR sheet, against NumPy.

    Raises BpxlError when the file cannot be checked at all (missing, not an xlsx, no LR
    sheets, no values and no LibreOffice); everything wrong inside the workbook is a finding.
    `progress` is told each step and its share of the whole.
    """
    pkg = Package(Path(path))
    try:
        return verify_package(pkg, engine, rtol=rtol, atol=atol, progress=progress)
    finally:
        pkg.close()


def verify_package(
    pkg: Package,
    engine: str = "auto",
    *,
    rtol: float = RTOL,
    atol: float = ATOL,
    progress: Progress = QUIET,
) -> Report:
    """`verify_workbook` on a package already open (the caller closes it), so that a caller
    who looked at its sheet titles first does not read the file twice."""
    if engine not in ENGINES:
        raise BpxlError(f"unknown engine {engine!r} (choose from {', '.join(ENGINES)})")
    path = pkg.path
    report = Report(str(path), rtol=rtol, atol=atol)
    try:
        titles = [t for t in pkg.parts if layout.training_sheet(t) is not None]
        if not titles:
            from backprop_xlsx.cnn import layout as cnn_layout

            if not any(t in pkg.parts for t in cnn_layout.SHEETS):
                raise BpxlError(
                    f"{path} has no LR sheets (named like 'LR 0.5') and no trained-net sheets: "
                    "not a bpxl workbook?"
                )
            return _verify_cnn_only(pkg, report, engine)
        rng = np.random.default_rng(INPUT_SEED)
        # the architecture, from the workbook itself
        base = with_iteration_column(read_network(network_cells(pkg)), pkg, titles)
        layouts = optimizer_layouts(base, titles)  # each sheet's columns, by its title
        sheet_layout = layouts[0]
        summary_title = layout.summary_title([lt.optimizer.name for lt in layouts])
        report.summary_title = summary_title
        sheets: list[LrSheet] = []
        healthy: dict[str, bool] = {}
        compiled: dict[str, int] = {}
        progress.step(f"reading {len(titles)} LR sheet(s)")
        for title, sheet in zip(titles, read_lr_sheets(pkg, titles, layouts), strict=True):
            progress.advance(SHARE_READ / len(titles))
            progress.step(f"{title}: formulas on changed inputs")
            healthy[title] = check_structure(sheet, report)
            compiled[title] = check_formulas(
                sheet, report, rng, pkg.titles, progress, SHARE_FORMULAS / len(titles)
            )
            sheet.columns = sheet.formula_ids = None  # not needed any more
            sheets.append(sheet)
        setup_cells = read_setup_cells(pkg, sheet_layout)
        if sheet_layout.batching is not None:
            check_schedule(read_schedule_cells(pkg, sheet_layout), sheet_layout, report)
        summary_cells = read_summary_cells(pkg, sheets, summary_title)
        gradcheck = read_gradcheck_cells(pkg, sheet_layout)
        others = {} if gradcheck is None else {G.GRADCHECK_SHEET: gradcheck}
        titles_by_fold = dict(pkg.titles)
        report.engine = choose_engine(pkg, engine, sheets)
        progress.step("LibreOffice recalculation" if report.engine == "libreoffice" else "values")
        if report.engine == "libreoffice":
            setup_cells, summary_cells = recalculated(
                path, sheets, setup_cells, summary_cells, pkg, report, summary_title, others
            )
        else:  # every value cached, the trained net's sheets' too
            report.cnn = check_cnn_sheets(pkg, report)
    except RecursionError:
        raise  # a bug, not a damaged file
    except CORRUPT as exc:
        raise BpxlError(
            f"cannot read {path}: a damaged xlsx ({type(exc).__name__}: {exc})"
        ) from None
    progress.advance(SHARE_RECALC)
    progress.step("values against NumPy")

    setup = None
    if setup_cells is None:
        report.add(Finding(layout.SETUP_SHEET, "", "the Setup sheet is missing"))
    else:
        setup = read_setup(setup_cells, report, sheet_layout)
    expected = expected_runs(setup, [s for s in sheets if healthy[s.title]])
    until = {} if setup is None else reproducible_until(setup, sheets, expected, report)
    lr: dict[str, tuple[float | None, np.ndarray | None]] = {}
    for sheet in sheets:
        want = expected.get(sheet.title)
        if want is None:
            stats = SheetStats(sheet.title, sheet.eta(), max(sheet.rows - 1, 0))
        else:
            stats = check_values(sheet, want, report, until.get(sheet.title))
        stats.formulas = compiled[sheet.title]
        report.sheets.append(stats)
        progress.advance(SHARE_VALUES / len(sheets))
        loss = sheet.layout.loss_key
        e_total = None if want is None else want[:, sheet.layout.keys.index(loss)]
        if e_total is not None and sheet.title in until:  # not compared from there on
            e_total = e_total.copy()
            e_total[until[sheet.title] :] = np.nan
        lr[sheet.title] = (sheet.eta(), e_total)
    if summary_cells is None:
        report.add(Finding(summary_title, "", f"the {summary_title} sheet is missing"))
    else:
        check_summary(summary_cells, lr, report, summary_title)
    if others:
        steps = {s.title: max(s.rows - 1, 0) for s in sheets}
        report.gradcheck_cells = check_gradcheck(
            others[G.GRADCHECK_SHEET], sheet_layout, steps, expected, setup, titles_by_fold, report
        )
    return report


def _verify_cnn_only(pkg: Package, report: Report, engine: str) -> Report:
    """A workbook with the trained net's sheets and no LR sheets: check those alone."""
    report.engine = choose_engine(pkg, engine, [])
    check_cnn(pkg, report.engine, report)
    return report
