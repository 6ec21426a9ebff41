"""How an LR sheet and Error vs LR look when opened: widths, frozen panes, charts and axes.

The cells (what verify checks) are layout.py's; this module decides only where the eye goes.
An LR sheet opens with its rows 1–3 frozen (η, a band holding the charts, the header) and the
iteration column frozen, with the targets and inputs beside it when they fit in about half of
a 1366-pixel screen (the seed's four do, XOR's twelve do, twenty samples' sixty do not). The
charts sit in the band right of the frozen columns, so they are on the first screen and stay
there while the iterations scroll by.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from openpyxl.chart import Reference, ScatterChart, Series
from openpyxl.chart.text import RichText, Text
from openpyxl.chart.title import Title
from openpyxl.drawing.spreadsheet_drawing import AnchorMarker, OneCellAnchor
from openpyxl.drawing.text import (
    CharacterProperties,
    Paragraph,
    ParagraphProperties,
    RegularTextRun,
)
from openpyxl.drawing.xdr import XDRPositiveSize2D
from openpyxl.utils import column_index_from_string, get_column_letter
from openpyxl.utils.units import cm_to_EMU, pixels_to_EMU
from openpyxl.worksheet.worksheet import Worksheet

from backprop_xlsx.mlp import layout
from backprop_xlsx.xlsx.look import style_series

FROZEN_WIDTH = 100  # character widths (~7 px each): at most about half a 1366-pixel screen
NOTE_WIDTH = 30  # the frozen columns are wide enough to hold the note under η from here
NOTE_ROW = CHART_ROW = 2  # the band between η (row 1) and the header (row 3)
CHART_ROW_HEIGHT = 175.0  # points (~233 px): the band, a 6 cm chart and a small margin
CHART_HEIGHT = 6.0  # cm
E_TOTAL_CHART_WIDTH = 11.0  # cm
OUTPUTS_CHART_WIDTH = 13.0  # cm: its legend takes room
LEGEND_MAX = 8  # lines named in a legend; more would be squeezed unreadable into 6 cm
GAP = 8  # pixels between the frozen columns and a chart, and between the charts
TICKS = 5  # at most this many intervals on an iteration axis: labels never touch


def column_width(column: layout.Column) -> int:
    """Wide enough for the header and for the number format's digits."""
    wide = column.number_format.endswith("E+00") or column.number_format.count("0") > 4
    return max(13 if wide else 6, len(column.header) + 2)


def is_input(key: str) -> bool:
    """A target or input column (t1, i2_s3): a copy of Setup's training data on every row; with
    mini-batches also the epoch and the batch's sample numbers that pick them."""
    return re.fullmatch(r"[ti]\d+(?:_[sb]\d+)?|epoch|n_b\d+", key) is not None


def frozen_columns(sheet: layout.SheetLayout) -> int:
    """How many columns stay in view when scrolling right: the iteration column, and the
    targets and inputs after it when they all fit in FROZEN_WIDTH."""
    columns = sheet.columns
    if not columns or columns[0].key != layout.ITERATION:
        return 0
    n = 1
    while n < len(columns) and is_input(columns[n].key):
        n += 1
    width = sum(column_width(c) for c in columns[:n])
    return n if width <= FROZEN_WIDTH else 1


def frozen_width(sheet: layout.SheetLayout) -> int:
    return sum(column_width(c) for c in sheet.columns[: frozen_columns(sheet)])


def freeze_cell(sheet: layout.SheetLayout) -> str:
    """The top-left cell of the scrolling pane: rows above the first iteration and the
    frozen columns stay in view."""
    return f"{get_column_letter(frozen_columns(sheet) + 1)}{layout.FIRST_ROW}"


def column_pixels(column: layout.Column) -> int:
    """A column's width on screen at 100 %: 7 pixels per character of width (Excel's and
    LibreOffice's default font)."""
    return round(7 * column_width(column))


def _at(sheet: layout.SheetLayout, left: int) -> tuple[int, int]:
    """(0-based column, pixels into it) of the point `left` pixels right of column A's edge;
    past the last column, columns of the default 8.43 width."""
    for index, column in enumerate(sheet.columns):
        width = column_pixels(column)
        if left < width:
            return index, left
        left -= width
    default = round(7 * 8.43)
    return len(sheet.columns) + left // default, left % default


def chart_positions(sheet: layout.SheetLayout) -> list[tuple[int, int]]:
    """Left edges, in pixels from column A, of the E_total chart and, with several samples, the
    outputs chart: side by side in the band, starting right of the frozen columns."""
    left = sum(column_pixels(c) for c in sheet.columns[: frozen_columns(sheet)]) + GAP
    e_total = (left, _cm_pixels(E_TOTAL_CHART_WIDTH))
    if sheet.samples == 1 and sheet.batching is None:
        return [e_total]
    return [e_total, (left + e_total[1] + GAP, _cm_pixels(OUTPUTS_CHART_WIDTH))]


def _cm_pixels(cm: float) -> int:
    return round(cm / 2.54 * 96)


def chart_anchor(sheet: layout.SheetLayout, k: int) -> OneCellAnchor:
    """Chart k of the band, anchored to the cell under its left edge with the offset into it,
    so the charts sit a small gap apart whatever the columns' widths."""
    left, _ = chart_positions(sheet)[k]
    column, offset = _at(sheet, left)
    start = AnchorMarker(
        col=column,
        colOff=pixels_to_EMU(offset),
        row=CHART_ROW - 1,
        rowOff=pixels_to_EMU(GAP // 2),
    )
    size = XDRPositiveSize2D(cx=cm_to_EMU(_width_cm(k)), cy=cm_to_EMU(CHART_HEIGHT))
    return OneCellAnchor(_from=start, ext=size)


def _width_cm(k: int) -> float:
    return (E_TOTAL_CHART_WIDTH, OUTPUTS_CHART_WIDTH)[k]


def charts_end_column(sheet: layout.SheetLayout) -> int:
    """The last column (1-based) any chart of the band reaches, for the print area."""
    left, width = chart_positions(sheet)[-1]
    return _at(sheet, left + width)[0] + 1


def tick_unit(steps: int) -> int:
    """Iterations between labels: 1, 2 or 5 times a power of ten, at most TICKS intervals."""
    raw = max(steps, 1) / TICKS
    power = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    return next(f * power for f in (1, 2, 5, 10) if f * power >= raw)


def title(text: str, size: float = 11, bold: bool = True) -> Title:
    """A chart or axis title in `size` points (the default 18 leaves a 6 cm chart no room)."""
    font = CharacterProperties(sz=round(size * 100), b=bold)
    run = RegularTextRun(rPr=font, t=text)
    paragraph = Paragraph(pPr=ParagraphProperties(defRPr=font), r=[run])
    return Title(tx=Text(rich=RichText(p=[paragraph])), overlay=False)


def small_text(size: float = 8) -> RichText:
    """Tick labels and legend entries in `size` points."""
    font = CharacterProperties(sz=round(size * 100))
    return RichText(p=[Paragraph(pPr=ParagraphProperties(defRPr=font), endParaRPr=font)])


def iteration_chart(name: str, steps: int, y_title: str) -> ScatterChart:
    """A chart against iteration: an x-y chart, so the axis is numeric from 0 to `steps` with
    a label every tick_unit(steps) iterations (a line chart's category axis starts at 1 in
    LibreOffice and labels every category it has room for)."""
    chart = ScatterChart()
    chart.title = title(name)
    chart.style = 2
    chart.scatterStyle = "lineMarker"
    chart.height, chart.width = CHART_HEIGHT, E_TOTAL_CHART_WIDTH  # cm
    chart.x_axis.title = title("iteration", 9)
    chart.y_axis.title = title(y_title, 9)
    chart.x_axis.txPr = chart.y_axis.txPr = small_text()
    chart.x_axis.scaling.min, chart.x_axis.scaling.max = 0, max(steps, 1)
    chart.x_axis.majorUnit = tick_unit(steps)
    chart.x_axis.number_format = "0"
    chart.x_axis.majorGridlines = None
    chart.x_axis.crosses = "min"  # the iteration axis at the bottom, not at E_total = 1
    chart.y_axis.crosses = "min"
    chart.x_axis.delete = chart.y_axis.delete = False  # openpyxl 3.1 hides axes otherwise
    return chart


def e_total_chart(name: str, steps: int, bounds: tuple[float, float] | None) -> ScatterChart:
    """E_total against iteration, on a log axis: E_total spans many decades."""
    chart = iteration_chart(name, steps, "E_total (log scale)")
    chart.y_axis.scaling.logBase = 10
    if bounds is not None:
        chart.y_axis.scaling.min, chart.y_axis.scaling.max = bounds
    chart.y_axis.number_format = "0.0E+00"
    return chart


def add_lines(
    chart: ScatterChart,
    ws: Worksheet,
    x: Reference,
    columns: Sequence[int],
    header_row: int,
    last_row: int,
) -> None:
    """One line per column, named by its header in `header_row`, the data right below it."""
    for col in columns:
        y = Reference(ws, min_col=col, min_row=header_row, max_row=last_row)
        chart.series.append(Series(y, x, title_from_data=True))
    style_series(chart)


def lr_charts(
    ws: Worksheet,
    sheet: layout.SheetLayout,
    eta: float,
    steps: int,
    bounds: tuple[float, float] | None,
) -> None:
    """The E_total chart and, with several samples, every sample's outputs, in the band."""
    last = layout.last_row(steps)
    iteration = column_index_from_string(sheet.letter[layout.ITERATION])
    x = Reference(ws, min_col=iteration, min_row=layout.FIRST_ROW, max_row=last)
    chart = e_total_chart(f"E_total, {ws.title} (η = {eta:g})", steps, bounds)
    losses = ["E_total"] if sheet.batching is None else ["E_total", "E_train"]
    add_lines(chart, ws, x, [column_index_from_string(sheet.letter[k]) for k in losses],
              layout.HEADER_ROW, last)  # fmt: skip
    if sheet.batching is None:
        chart.legend = None
    else:  # the batch's loss and the whole training set's, one line each
        chart.legend.position = "b"
        chart.legend.txPr = small_text()
    chart.anchor = chart_anchor(sheet, 0)
    ws.add_chart(chart)
    if sheet.samples == 1 and sheet.batching is None:
        return
    outputs = iteration_chart(f"outputs per sample, {ws.title} (η = {eta:g})", steps, "a_o")
    outputs.width = OUTPUTS_CHART_WIDTH
    outputs.y_axis.number_format = "0.0"
    if sheet.network.net.activations[-1] in ("sigmoid", "softmax"):  # outputs between 0 and 1
        outputs.y_axis.scaling.min, outputs.y_axis.scaling.max = 0.0, 1.0
    if sheet.batching is None:
        keys = [sheet.sample(f"a_{n}", s) for s in range(sheet.samples) for n in sheet.names[-1]]
    else:  # every training sample's output, from the full pass: a batch position's changes
        S = range(sheet.training_samples)
        keys = [f"full_a_{n}_s{s + 1}" for s in S for n in sheet.names[-1]]
    columns = [column_index_from_string(sheet.letter[key]) for key in keys]
    add_lines(outputs, ws, x, columns, layout.HEADER_ROW, last)
    if len(columns) > LEGEND_MAX:
        outputs.legend = None
    else:
        outputs.legend.position = "r"
        outputs.legend.txPr = small_text()
    outputs.anchor = chart_anchor(sheet, 1)
    ws.add_chart(outputs)
