"""Write the workbook from the layout: every computed cell a live formula. (Minimal first cut.)"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from openpyxl import Workbook

from . import layout
from .network import PARAMS


def build_workbook(
    values: Mapping[str, float],
    etas: Sequence[float],
    steps: int,
    out: Path,
    *,
    recalc: bool = False,
) -> str:
    wb = Workbook(write_only=True)
    setup = wb.create_sheet(layout.SETUP_SHEET)
    rows: list[list] = [["bpxl"], [], ["name", "value"]]
    rows += [[name, float(values[name])] for name in PARAMS]
    for row in rows:
        setup.append(row)
    for eta in etas:
        ws = wb.create_sheet(layout.lr_sheet_title(eta))
        ws.append(["η", float(eta)])
        ws.append([])
        ws.append([c.header for c in layout.COLUMNS])
        for k in range(steps + 1):
            r = layout.row_of_iteration(k)
            ws.append([c.formula(r) for c in layout.COLUMNS])
    out.parent.mkdir(parents=True, exist_ok=True)
    wb.save(out)
    return f"wrote {out}"
