"""The workbook sheet `MNIST`: a row per epoch, the run's facts, native accuracy and loss charts.

The sheet is built alone with openpyxl, then transplanted into the target workbook by
backprop_xlsx.xlsx.transplant, so openpyxl never loads and re-saves the user's workbook (which would
rewrite its other sheets and drop what openpyxl does not understand).
"""

from __future__ import annotations

import math
import tempfile
import zipfile
from pathlib import Path

from backprop_xlsx.errors import BpxlError
from backprop_xlsx.xlsx.look import style_series
from mnist.records import COLUMNS

SHEET = "MNIST"


def check_workbook(path: Path) -> None:
    """--workbook must name an .xlsx that is a workbook (when it exists) in a writable folder."""
    if path.suffix.lower() != ".xlsx":
        raise BpxlError(f"--workbook {path} must be an .xlsx file")
    if path.exists():
        if not zipfile.is_zipfile(path):
            raise BpxlError(f"--workbook {path} is not an xlsx workbook (not a zip file)")
        with zipfile.ZipFile(path) as z:
            if "xl/workbook.xml" not in z.namelist():
                raise BpxlError(f"--workbook {path} is not an xlsx workbook (no xl/workbook.xml)")
    folder = path.parent
    if not folder.is_dir():
        raise BpxlError(f"--workbook {path}: folder {folder} does not exist")


def build_sheet(metrics: dict, path: Path) -> None:
    """A one-sheet workbook: a row per epoch, the run's facts, and two native line charts."""
    from openpyxl import Workbook
    from openpyxl.chart import LineChart, Reference
    from openpyxl.styles import Font

    wb = Workbook()
    ws = wb.active
    ws.title = SHEET
    ws.append(list(COLUMNS))
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for r in metrics["epochs"]:
        ws.append([r[c] for c in COLUMNS])
    n = len(metrics["epochs"])
    formats = {"B": "0.0000", "C": "0.00", "D": "0.0000", "E": "0.00", "F": "0.00000", "G": "0.0"}
    for col, fmt in formats.items():
        for row in range(2, n + 2):
            ws[f"{col}{row}"].number_format = fmt
    for col, width in zip("ABCDEFG", (7, 11, 11, 11, 11, 10, 9), strict=True):
        ws.column_dimensions[col].width = width
    ws.freeze_panes = "A2"
    ws.page_setup.orientation = "landscape"  # table, facts and charts on one printed page
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    ws.page_setup.fitToWidth, ws.page_setup.fitToHeight = 1, 1
    facts = [
        ("model", metrics["model"]),
        ("parameters", metrics["params"]),
        ("seed", metrics["seed"]),
        ("device", metrics.get("device", "")),
        ("final test accuracy (%)", metrics["epochs"][-1]["test_acc"]),
        ("accuracies", "percent"),
        ("lr", "at the start of each epoch"),
    ]
    for k, (key, value) in enumerate(facts, start=1):
        ws.cell(row=k, column=9, value=key).font = Font(bold=True)
        ws.cell(row=k, column=10, value=value).number_format = "0.00" if "%" in key else "General"
    ws.column_dimensions["I"].width = 24
    ws.column_dimensions["J"].width = 18

    epochs = Reference(ws, min_col=1, min_row=2, max_row=n + 1)
    test_acc = [e["test_acc"] for e in metrics["epochs"]]
    for anchor, title, ylabel, cols in (
        ("I10", "Accuracy", "accuracy (%)", (3, 5)),
        ("I27", "Loss", "loss (NLL)", (2, 4)),
    ):
        chart = LineChart()
        chart.title, chart.y_axis.title, chart.x_axis.title = title, ylabel, "epoch"
        chart.height, chart.width = 8, 16
        for col in cols:
            chart.add_data(
                Reference(ws, min_col=col, min_row=1, max_row=n + 1), titles_from_data=True
            )
        chart.set_categories(epochs)
        style_series(chart)
        if title == "Accuracy":  # zoom on the test accuracy; a poor first train epoch runs off
            chart.y_axis.scaling.min = max(0, math.floor(min(test_acc)) - 1)
            chart.y_axis.scaling.max = 100
        chart.x_axis.delete = False
        chart.y_axis.delete = False
        ws.add_chart(chart, anchor)
    wb.save(path)


def write_workbook(metrics: dict, workbook: Path) -> None:
    """Put the sheet MNIST into `workbook` (replacing an old one), leaving every other sheet as is.

    The sheet is built alone, then transplanted, so openpyxl never loads and re-saves the user's
    workbook (which would rewrite its other sheets and drop what openpyxl does not understand).
    """
    from backprop_xlsx.xlsx.transplant import transplant_sheets

    check_workbook(workbook)
    with tempfile.TemporaryDirectory(prefix=".mnist-sheet-", dir=workbook.parent) as folder:
        tmp = Path(folder) / "mnist.xlsx"
        build_sheet(metrics, tmp)
        transplant_sheets(tmp, workbook, [SHEET])
