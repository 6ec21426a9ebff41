"""The house look every sheet bpxl writes shares: the fill of cells a person may edit, chart lines.

Explicit colours, never the theme's: a workbook LibreOffice saved has no theme, and series left
to theme colours draw no lines there once their sheet is moved into it.
"""

from __future__ import annotations

from openpyxl.chart import ScatterChart
from openpyxl.styles import PatternFill

INPUT_COLOR = "FFF2CC"  # light yellow: cells a person is meant to edit
INPUT_FILL = PatternFill("solid", start_color=INPUT_COLOR)
EXERCISE_FILL = PatternFill("solid", start_color="FFFF00")  # yellow: an exercise's cells to fill

# matplotlib's default cycle, so the workbook's charts match the PNG pictures
LINE_COLORS = ("1F77B4", "FF7F0E", "2CA02C", "D62728", "9467BD",
               "8C564B", "E377C2", "7F7F7F", "BCBD22", "17BECF")  # fmt: skip


def style_series(chart: ScatterChart) -> None:
    """Straight 1.5 pt lines without markers, each in its own explicit colour."""
    for k, series in enumerate(chart.series):
        series.marker.symbol = "none"
        series.smooth = False
        series.graphicalProperties.line.width = 19050  # 1.5 pt
        series.graphicalProperties.line.solidFill = LINE_COLORS[k % len(LINE_COLORS)]
