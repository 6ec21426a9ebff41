"""Everything a run leaves behind: metrics (JSON + CSV), checkpoints, two PNGs, the MNIST sheet.

Every file is written to a temporary file in its folder and renamed over the target, so an
interrupted run leaves the previous complete file, never half of one. Also a CLI to put a finished
run's metrics into a workbook without retraining:

    python -m mnist.export --metrics outputs/mnist_metrics.json --workbook outputs/backprop.xlsx
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import torch

from backprop_xlsx.errors import BpxlError
from backprop_xlsx.fileio import atomic_output
from mnist.data import MEAN, STD

COLUMNS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds")
SHEET = "MNIST"


# ---- metrics and checkpoints
def write_metrics(metrics: dict, out: Path) -> None:
    """mnist_metrics.json (the whole record) and mnist_metrics.csv (one row per epoch)."""
    with atomic_output(out / "mnist_metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(metrics["epochs"])
    with atomic_output(out / "mnist_metrics.csv") as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")


def read_metrics(path: Path) -> dict:
    """A metrics JSON as written above, checked enough to export it."""
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BpxlError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BpxlError(f"{path} is not a metrics JSON file ({exc})") from exc
    rows = metrics.get("epochs") if isinstance(metrics, dict) else None
    if not rows or not all(isinstance(r, dict) and set(COLUMNS) <= r.keys() for r in rows):
        raise BpxlError(f"{path} has no epochs with {', '.join(COLUMNS)}")
    return metrics


def save_checkpoint(state: dict, path: Path) -> None:
    with atomic_output(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a damaged file
        raise BpxlError(
            f"cannot load checkpoint {path} ({type(exc).__name__}); delete it to start over"
        ) from exc


# ---- pictures
def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def misclassified_png(
    x: torch.Tensor,
    y: torch.Tensor,
    pred: torch.Tensor,
    path: Path,
    title: str,
    limit: int = 48,
    cols: int = 12,
) -> None:
    """The first `limit` wrong test digits, each captioned with its true and predicted label."""
    from PIL import Image, ImageDraw

    wrong = (pred != y).nonzero().flatten()[:limit].cpu()
    scale, cap, head = 3, 16, 28
    cell_w, cell_h = 28 * scale + 8, 28 * scale + cap + 6
    rows = max(1, -(-len(wrong) // cols))
    img = Image.new("L", (cols * cell_w + 8, head + rows * cell_h + 4), 255)
    draw = ImageDraw.Draw(img)
    draw.text((8, 6), title, fill=0, font=_font(14))
    pixels = (x[wrong, 0].float().cpu() * STD + MEAN).clamp(0, 1)
    for k, i in enumerate(wrong.tolist()):
        digit = Image.fromarray((255 - pixels[k] * 255).byte().numpy(), mode="L")
        left, top = 8 + (k % cols) * cell_w, head + (k // cols) * cell_h
        img.paste(digit.resize((28 * scale, 28 * scale), Image.NEAREST), (left, top))
        draw.text(
            (left, top + 28 * scale + 1),
            f"true {int(y[i])}  pred {int(pred[i])}",
            fill=0,
            font=_font(12),
        )
    with atomic_output(path) as tmp:
        img.save(tmp, format="PNG")


def _panel(draw, box, xs, series, title, fmt, floor=None, ceiling=None, legend_low=False):
    """One line chart in `box` = (left, top, right, bottom): axes, ticks, lines, legend.

    `floor`/`ceiling` cut the y range so the first epoch does not squash the ones that matter;
    points beyond them are drawn on the edge.
    """
    left, top, right, bottom = box
    values = [v for _, vs, _ in series for v in vs]
    lo, hi = min(values), max(values)
    lo = max(lo, floor) if floor is not None and floor < hi else lo
    hi = min(hi, ceiling) if ceiling is not None and ceiling > lo else hi
    clip_lo, clip_hi = lo, hi
    if hi - lo < 1e-9:
        lo, hi = lo - 1, hi + 1
    pad = (hi - lo) * 0.05
    lo, hi = lo - pad, hi + pad
    x0, x1 = min(xs), max(max(xs), min(xs) + 1)

    def at(x, v):
        v = min(max(v, clip_lo), clip_hi)
        return (
            left + (x - x0) / (x1 - x0) * (right - left),
            bottom - (v - lo) / (hi - lo) * (bottom - top),
        )

    small = _font(11)
    off = [
        f"{name} {fmt.format(v)} at epoch {x}"
        for name, vs, _ in series
        for x, v in zip(xs, vs, strict=True)
        if not clip_lo <= v <= clip_hi
    ]
    if off:
        title += " (drawn on the edge: " + ", ".join(off[:3]) + ")"
    draw.text((left, top - 22), title, fill="black", font=_font(14 if not off else 12))
    draw.rectangle(box, outline="black")
    for k in range(6):
        v = lo + (hi - lo) * k / 5
        _, y = at(x0, v)
        draw.line((left - 4, y, left, y), fill="black")
        draw.line((left, y, right, y), fill="#e6e6e6")
        draw.text((left - 6, y), fmt.format(v), fill="black", font=small, anchor="rm")
    step = max(1, round((x1 - x0) / 10))
    for x in range(int(x0), int(x1) + 1, step):
        px, _ = at(x, lo)
        draw.line((px, bottom, px, bottom + 4), fill="black")
        draw.text((px, bottom + 6), str(x), fill="black", font=small, anchor="mt")
    draw.text(((left + right) / 2, bottom + 22), "epoch", fill="black", font=small, anchor="mt")
    for k, (name, vs, colour) in enumerate(series):
        points = [at(x, v) for x, v in zip(xs, vs, strict=True)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for px, py in points:
            draw.ellipse((px - 2.5, py - 2.5, px + 2.5, py + 2.5), fill=colour)
        ly = (bottom - 16 * len(series) - 4 if legend_low else top + 12) + 16 * k
        draw.line((right - 110, ly, right - 90, ly), fill=colour, width=2)
        draw.text((right - 85, ly), name, fill="black", font=small, anchor="lm")


def curves_png(metrics: dict, path: Path) -> None:
    """Accuracy and loss against epoch, train and test, side by side."""
    from PIL import Image, ImageDraw

    rows = metrics["epochs"]
    xs = [r["epoch"] for r in rows]
    img = Image.new("RGB", (1000, 400), "white")
    draw = ImageDraw.Draw(img)
    final = rows[-1]
    draw.text(
        (20, 8),
        f"MNIST, model {metrics['model']} ({metrics['params']:,} parameters), "
        f"seed {metrics['seed']}: final test accuracy {final['test_acc']:.2f}%",
        fill="black",
        font=_font(15),
    )
    blue, orange = "#1f77b4", "#ff7f0e"
    _panel(
        draw,
        (80, 70, 480, 340),
        xs,
        [
            ("train", [r["train_acc"] for r in rows], blue),
            ("test", [r["test_acc"] for r in rows], orange),
        ],
        "accuracy (%)",
        "{:.2f}",
        floor=97.0,
        legend_low=True,
    )
    _panel(
        draw,
        (580, 70, 980, 340),
        xs,
        [
            ("train", [r["train_loss"] for r in rows], blue),
            ("test", [r["test_loss"] for r in rows], orange),
        ],
        "loss (mean NLL)",
        "{:.3f}",
        ceiling=0.12,
    )
    with atomic_output(path) as tmp:
        img.save(tmp, format="PNG")


def write_pictures(
    metrics: dict, x: torch.Tensor, y: torch.Tensor, pred: torch.Tensor, out: Path
) -> None:
    final = metrics["epochs"][-1]
    wrong = int((pred != y).sum())
    misclassified_png(
        x,
        y,
        pred,
        out / "mnist_misclassified.png",
        f"{wrong} of {len(y):,} test digits wrong after epoch {final['epoch']} "
        f"(model {metrics['model']}, seed {metrics['seed']}); first {min(wrong, 48)}"
        " shown with true and predicted label",
    )
    curves_png(metrics, out / "mnist_curves.png")


# ---- workbook
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
        ws.cell(row=k, column=10, value=value)
    ws.cell(row=5, column=10).number_format = "0.00"
    ws.column_dimensions["I"].width = 24
    ws.column_dimensions["J"].width = 18

    epochs = Reference(ws, min_col=1, min_row=2, max_row=n + 1)
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
        chart.x_axis.delete = False
        chart.y_axis.delete = False
        ws.add_chart(chart, anchor)
    wb.save(path)


def write_workbook(metrics: dict, workbook: Path) -> None:
    """Put the sheet MNIST into `workbook` (replacing an old one), leaving every other sheet as is.

    The sheet is built alone, then transplanted, so openpyxl never loads and re-saves the user's
    workbook (which would rewrite its other sheets and drop what openpyxl does not understand).
    """
    check_workbook(workbook)
    try:
        from backprop_xlsx.package import transplant_sheets
    except ImportError as exc:
        raise BpxlError(
            "this checkout has no backprop_xlsx.package.transplant_sheets yet; "
            "export later with python -m mnist.export"
        ) from exc
    with tempfile.TemporaryDirectory(prefix=".mnist-sheet-", dir=workbook.parent) as folder:
        tmp = Path(folder) / "mnist.xlsx"
        build_sheet(metrics, tmp)
        transplant_sheets(tmp, workbook, [SHEET])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m mnist.export", description="Write a finished run's metrics into a workbook."
    )
    p.add_argument("--metrics", default="outputs/mnist_metrics.json", help="metrics JSON")
    p.add_argument("--workbook", help="the .xlsx to put the sheet MNIST into")
    p.add_argument("--curves", help="also redraw the curves PNG to this path")
    args = p.parse_args(argv)
    try:
        if args.workbook is None and args.curves is None:
            raise BpxlError("nothing to do: give --workbook and/or --curves")
        metrics = read_metrics(Path(args.metrics))
        if args.workbook is not None:
            write_workbook(metrics, Path(args.workbook))
            print(f"wrote sheet {SHEET} ({len(metrics['epochs'])} epochs) into {args.workbook}")
        if args.curves is not None:
            curves_png(metrics, Path(args.curves))
            print(f"wrote {args.curves}")
    except BpxlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
