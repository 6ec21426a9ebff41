"""The trained net's sheets, written: `MNIST digits`, `MNIST weights` and `MNIST net`.

A learner types an image number into the yellow cell of `MNIST net` and watches the digit go
through every feature map, by live formulas, to ten probabilities and the predicted digit. The
weights sheet holds the checkpoint's raw numbers (conv weights, BatchNorm γ, β, running mean,
running var, ε) and folds BatchNorm into the convs by formulas, so changing any of them changes
the net. Where every cell goes, and its formula, is layout.py. openpyxl writes what a person sees
once; the ~125,000 bulk cells are streamed (xlsx.stream.Bulk). No torch: mnist/ converts a model
into an `Arch` and `Weights` and picks the digits.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from backprop_xlsx.cnn import layout as L
from backprop_xlsx.cnn.forward import Weights
from backprop_xlsx.cnn.layout import Arch
from backprop_xlsx.xlsx.look import INPUT_FILL
from backprop_xlsx.xlsx.stream import Bulk
from backprop_xlsx.xlsx.transplant import build_package

if TYPE_CHECKING:
    from openpyxl.worksheet.worksheet import Worksheet

NUMBER = "0.000000"  # weights as shown; the cells hold every digit of the checkpoint's float32


@dataclass
class Digits:
    """The test images the digits sheet holds, in test-set order."""

    index: np.ndarray  # positions in the test set
    pixels: np.ndarray  # (n, 784) uint8
    labels: np.ndarray  # (n,)
    predicted: np.ndarray  # (n,) the model's prediction when the sheets were written


def _bold(ws: Worksheet, row: int, col: int, value: str | int) -> None:
    from openpyxl.styles import Font

    ws.cell(row=row, column=col, value=value).font = Font(bold=True)


def _put(
    ws: Worksheet, bulk: Bulk, row: int, col: int, value: float | str, style: str, **look: object
) -> None:
    """A bulk cell; the first of each `style` goes through openpyxl with `look` (font, format)."""
    if style not in bulk.prototype:
        cell = ws.cell(row=row, column=col, value=value)
        for name, setting in look.items():
            setattr(cell, name, setting)
        bulk.prototype[style] = (row, col)
    elif isinstance(value, str):
        bulk.formula(row, col, value, style)
    else:
        bulk.number(row, col, value, style)


def _fill_digits(ws: Worksheet, digits: Digits) -> Bulk:
    for col, name in enumerate(L.DIGIT_COLUMNS, start=1):
        _bold(ws, 1, col, name)
    for p in range(L.PIXELS):
        ws.cell(row=1, column=L.PIXEL_COL + p, value=f"px {p}")
    bulk = Bulk(L.DIGITS_SHEET)
    for n in range(len(digits.index)):
        row = L.DIGIT_FIRST_ROW + n
        facts = (n + 1, digits.index[n], digits.labels[n], digits.predicted[n])
        values = [*(int(v) for v in facts), *digits.pixels[n].tolist()]
        for col, value in enumerate(values, start=1):
            bulk.number(row, col, value)
    ws.freeze_panes = ws.cell(row=2, column=L.PIXEL_COL)
    ws.column_dimensions["D"].width = 18
    ws.print_area = f"A1:{L.a1(1, L.PIXEL_COL + 27)[:-1]}{len(digits.index) + 1}"  # 28 pixels
    return bulk


def _fill_weights(ws: Worksheet, weights: Weights, layout: L.NetLayout, source: str) -> Bulk:
    from openpyxl.styles import Font

    ws["A1"] = "The trained net's weights: raw numbers as in the checkpoint, folded by formulas"
    ws["A1"].font = Font(bold=True, size=14)
    ws["A2"] = (
        f"From {source}. BatchNorm in eval mode is y = s·x + b′ per channel, s = γ/√(var + ε), "
        "b′ = β + s·(conv bias − mean): folded into the conv, w·s. Change any raw number and the "
        f"net on {L.NET_SHEET} changes."
    )
    _bold(ws, L.ARCH_TITLE_ROW, 1, "Architecture (the verifier reads this table)")
    for col, name in enumerate(L.ARCH_COLUMNS, start=1):
        _bold(ws, L.ARCH_HEADER_ROW, col, name)
    for r, row in enumerate(L.arch_rows(layout.arch), start=L.ARCH_HEADER_ROW + 1):
        for col, value in enumerate(row, start=1):
            ws.cell(row=r, column=col, value=value)
    bulk = Bulk(L.WEIGHTS_SHEET)
    fmt = {"number_format": NUMBER}
    for name, section in layout.convs.items():
        conv, p = section.conv, weights.convs[name]
        title = f"{name}: {conv.k}×{conv.k} conv, {conv.c_in} → {conv.c_out} channels" + (
            ", BatchNorm folded in" if conv.bn else ""
        )
        _bold(ws, section.title_row, 1, title)
        head = section.title_row + 1
        columns = list(L.BN_COLUMNS)
        if conv.bn:
            columns += ["scale s = γ/√(var+ε)", "folded bias b′"]
        for col, text in enumerate(columns, start=1):
            _bold(ws, head, col, text)
        for c in range(conv.c_in):
            _bold(ws, head, section.raw(0, c)[1], f"w[·,{c}]")
            if conv.bn:
                _bold(ws, head, section.folded(0, c)[1], f"w·s [·,{c}]")
        for o in range(conv.c_out):
            row = section.row(o)
            ws.cell(row=row, column=1, value=o)
            if conv.bn:
                values = (p.gamma[o], p.beta[o], p.mean[o], p.var[o], p.eps[o])
                for col, value in zip(range(L.GAMMA, L.EPS + 1), values, strict=True):
                    ws.cell(row=row, column=col, value=float(value))
                scale = ws.cell(row=row, column=L.SCALE, value=L.scale_formula(row))
                bias = ws.cell(row=row, column=L.FOLDED_BIAS)
                bias.value = L.folded_bias_formula(row, conv.bias)
                scale.number_format = bias.number_format = NUMBER
            if conv.bias:
                ws.cell(row=row, column=L.CONV_BIAS, value=float(p.bias[o]))
            for c in range(conv.c_in):
                top, left = section.raw(o, c)
                f_top, f_left = section.folded(o, c)
                for di in range(conv.k):
                    for dj in range(conv.k):
                        value = float(p.weight[o, c, di, dj])
                        _put(ws, bulk, top + di, left + dj, value, "weight", **fmt)
                        if conv.bn:
                            formula = L.folded_weight_formula((top + di, left + dj), row)
                            _put(ws, bulk, f_top + di, f_left + dj, formula, "weight", **fmt)
    if layout.fc is not None:
        fc = layout.fc
        _bold(ws, fc.title_row, 1, f"fc: linear {fc.fc.c_in} → {fc.fc.c_out} (weight transposed)")
        _bold(ws, fc.title_row + 1, 1, "input feature j")
        for k in range(fc.fc.c_out):
            _bold(ws, fc.title_row + 1, 2 + k, f"class {k}")
        for j in range(fc.fc.c_in):
            ws.cell(row=fc.first_row + j, column=1, value=j)
            for k in range(fc.fc.c_out):
                value = float(weights.fc_weight[k, j])
                ws.cell(*fc.weight(k, j), value=value).number_format = NUMBER
        _bold(ws, fc.bias(0)[0], 1, "bias")
        for k in range(fc.fc.c_out):
            value = float(weights.fc_bias[k])
            ws.cell(*fc.bias(k), value=value).number_format = NUMBER
    for col in range(1, 8):
        ws.column_dimensions[L.a1(1, col)[:-1]].width = 13
    ws.column_dimensions["A"].width = 14
    return bulk


def _fill_net(ws: Worksheet, layout: L.NetLayout) -> Bulk:
    from openpyxl.chart import BarChart, Reference
    from openpyxl.formatting.rule import ColorScaleRule
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.datavalidation import DataValidation

    n = layout.n_images
    ws["A1"] = "The trained net classifies one digit, by live formulas"
    ws["A1"].font = Font(bold=True, size=14)
    panel = [
        (L.PICK, f"picked image (1–{n}): change it", 1),
        (L.TRUE_LABEL, "true label", layout.true_label_formula()),
        (L.PREDICTED, "predicted digit", layout.predicted_formula()),
        (L.MEAN_CELL, "normalisation mean", L.MEAN),
        (L.STD_CELL, "normalisation std", L.STD),
    ]
    for (row, col), label, value in panel:
        ws.cell(row=row, column=1, value=label)
        ws.cell(row=row, column=col, value=value).font = Font(bold=True)
    pick = ws.cell(*L.PICK)
    pick.fill = INPUT_FILL
    # A stop alert: without showErrorMessage a spreadsheet takes any value silently, and a
    # picked image outside 1…n leaves every formula of the sheet pointing at nothing.
    rule = DataValidation(
        type="whole",
        operator="between",
        formula1="1",
        formula2=str(n),
        allow_blank=False,
        showErrorMessage=True,
        errorStyle="stop",
        errorTitle="picked image",
        error=f"Type a whole number from 1 to {n}: the test image the net classifies.",
        showInputMessage=True,
        promptTitle="picked image",
        prompt=f"A whole number from 1 to {n}",
    )
    ws.add_data_validation(rule)
    rule.add(pick.coordinate)

    for col, text in enumerate(("digit", "logit z", "e^(z − max z)", "probability"), start=1):
        _bold(ws, L.PROB_HEADER_ROW, col, text)
    for k in range(L.CLASSES):
        row = L.PROB_FIRST_ROW + k
        ws.cell(row=row, column=L.DIGIT_COL, value=k)
        ws.cell(row=row, column=L.LOGIT_COL, value=layout.logit_formula(k)).number_format = "0.0000"
        ws.cell(row=row, column=L.EXP_COL, value=layout.exp_formula(k)).number_format = "0.0000"
        cell = ws.cell(row=row, column=L.PROB_COL, value=layout.prob_formula(k))
        cell.number_format = "0.0000"
    chart = BarChart()
    chart.title, chart.y_axis.title, chart.x_axis.title = "Probabilities", "p", "digit"
    chart.height, chart.width = 7.5, 11
    last = L.PROB_FIRST_ROW + L.CLASSES - 1
    chart.add_data(
        Reference(ws, min_col=L.PROB_COL, min_row=L.PROB_HEADER_ROW, max_row=last),
        titles_from_data=True,
    )
    chart.set_categories(Reference(ws, min_col=L.DIGIT_COL, min_row=L.PROB_FIRST_ROW, max_row=last))
    chart.legend = None
    chart.y_axis.scaling.min, chart.y_axis.scaling.max = 0, 1
    chart.y_axis.majorUnit, chart.y_axis.number_format = 0.2, "0.0"
    chart.x_axis.delete = chart.y_axis.delete = False
    chart.series[0].graphicalProperties.solidFill = "1F77B4"  # explicit: no theme needed
    ws.add_chart(chart, f"A{L.CHART_ROW}")

    last_stage = layout.arch.stages[-1].name
    _bold(ws, L.GAP_HEADER_ROW, 1, f"global average pooling of {last_stage}")
    for c in range(layout.gap_channels):
        row, col = layout.gap_cell(c)
        ws.cell(row=row, column=1, value=f"mean of {last_stage} ch {c}")
        ws.cell(row=row, column=col, value=layout.gap_formula(c)).number_format = "0.0000"

    bulk = Bulk(L.NET_SHEET)
    # Whole numbers, zeros (most of a ReLU map) blank: one decimal does not fit the narrow
    # columns that make a map look like a picture. The value is there to see in a wider column.
    looks = {
        "map": {"font": Font(size=6), "number_format": "0;-0;;@"},
        "input": {"font": Font(size=6), "number_format": ";;;"},  # the digit is the picture
    }
    for s, blocks in enumerate(layout.blocks):
        stage = layout.arch.stages[s - 1] if s else None
        _bold(ws, layout.band_rows[s], L.MAPS_COL, _band_title(layout, s))
        for b in blocks:
            if stage is not None:
                ws.cell(row=b.top - 1, column=b.left, value=b.label).font = Font(size=8)
            for i in range(b.size):
                for j in range(b.size):
                    if stage is None:
                        formula = layout.input_formula(i, j)
                    else:
                        formula = layout.stage_formula(s, b.channel, i, j)
                    style = "input" if s == 0 else "map"
                    _put(ws, bulk, b.top + i, b.left + j, formula, style, **looks[style])
            end = "000000" if s == 0 else "1F4E79"
            ws.conditional_formatting.add(
                b.range,
                ColorScaleRule(
                    start_type="min", start_color="FFFFFF", end_type="max", end_color=end
                ),
            )
    widths = {1: 30, 2: 12, 3: 13, 4: 12, 5: 2}
    last_col = max(b.left + b.size for blocks in layout.blocks for b in blocks)
    for col in range(1, last_col + 1):
        ws.column_dimensions[get_column_letter(col)].width = widths.get(col, 2.7)
    ws.freeze_panes = ws.cell(row=1, column=L.MAPS_COL)
    ws.sheet_view.zoomScale = 85
    # The printed page: the panel, the input digit and the first stage's maps. All of the net
    # is on screen; on paper it would be dozens of pages of tiny cells.
    first = layout.blocks[1]
    right = max(b.left + b.size - 1 for b in first)
    bottom = max(b.top + b.size - 1 for b in first)
    ws.print_area = f"A1:{get_column_letter(right)}{max(bottom, L.CHART_ROW + 15)}"
    _one_page(ws)
    return bulk


def _one_page(ws: Worksheet) -> None:
    ws.page_setup.orientation = "landscape"
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    ws.page_setup.fitToWidth, ws.page_setup.fitToHeight = 1, 1


def _band_title(layout: L.NetLayout, s: int) -> str:
    if s == 0:
        return "input x = (pixel/255 − mean)/std of the picked image, 28×28"
    stage, shape = layout.arch.stages[s - 1], layout.shapes[s]
    size = f"{shape.channels} maps {shape.size}×{shape.size}"
    if isinstance(stage, L.Conv):
        what = f"{stage.name}: Σ over {stage.c_in} input maps of {stage.k}×{stage.k} window · w"
        if stage.bn:
            what += " (BatchNorm folded: w·s, + b′)"
        elif stage.bias:
            what += " + bias"
    else:
        what = f"{stage.name}: {stage.k}×{stage.k} max-pool"
        if stage.signed_by:
            what += f" (min-pool where {stage.signed_by}'s BatchNorm scale s < 0)"
    return f"{what}{', then ReLU = MAX(0, …)' if stage.relu else ''}: {size}"


def build_sheets(arch: Arch, weights: Weights, digits: Digits, path: Path, source: str) -> None:
    """A workbook holding just the three sheets, for transplanting."""
    from openpyxl import Workbook

    layout = L.NetLayout(arch, len(digits.index))
    wb = Workbook()
    ws_digits = wb.active
    ws_digits.title = L.DIGITS_SHEET
    bulks = [
        _fill_digits(ws_digits, digits),
        _fill_weights(wb.create_sheet(L.WEIGHTS_SHEET), weights, layout, source),
        _fill_net(wb.create_sheet(L.NET_SHEET), layout),
    ]
    wb.active = 2
    frame = io.BytesIO()
    wb.save(frame)
    streams = {bulk.title: bulk.stream for bulk in bulks}
    build_package(frame.getvalue(), path, streams=streams, stream_level=1)
