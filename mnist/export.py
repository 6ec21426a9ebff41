"""Everything a run leaves behind: metrics (JSON + CSV), checkpoints, two PNGs, the MNIST sheet.

Every file is written to a temporary file in its folder and renamed over the target, so an
interrupted run leaves the previous complete file, never half of one. Also a CLI to put a finished
run's metrics into a workbook, or to redraw its pictures, without retraining:

    python -m mnist.export --metrics outputs/mnist_metrics.json --workbook outputs/backprop.xlsx
    python -m mnist.export --curves outputs/mnist_curves.png \\
        --checkpoint outputs/checkpoints/mnist_last.pt \\
        --misclassified outputs/mnist_misclassified.png
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
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


# ---- pictures (matplotlib's object API on the Agg canvas: no pyplot, no global backend)
TARGET = 99.4  # the accuracy the project promises, drawn as a dashed line
BLUE, ORANGE = "#1f77b4", "#ff7f0e"


def _figure(width: float, height: float, layout: str | None = "constrained"):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path, title: str) -> None:
    """Atomically, as PNG, with `title` also in the file's Title text chunk."""
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Title": title, "Software": "bpxl mnist"})


def wrong_title(n_wrong: int, total: int, epoch: int) -> str:
    return f"{n_wrong:,} of {total:,} wrong after epoch {epoch}"


def misclassified_png(
    x: torch.Tensor,
    y: torch.Tensor,
    pred: torch.Tensor,
    path: Path,
    epoch: int,
    subtitle: str = "",
    limit: int = 60,
    cols: int = 12,
) -> None:
    """The wrong test digits (the first `limit`), each titled with its true and predicted label.

    One image of all the digits with a caption above each, not an axes per digit: 60 axes would
    cost about a second per picture.
    """
    import numpy as np

    wrong = (pred != y).nonzero().flatten().cpu()
    title = wrong_title(len(wrong), len(y), epoch)
    shown = wrong[:limit]
    rows = max(1, -(-len(shown) // cols))
    cap, gap = 11, 5  # pixels of caption above, and of space beside, each 28×28 digit
    cell_h, cell_w = 28 + cap, 28 + gap
    sheet = np.zeros((rows * cell_h + gap, cols * cell_w), dtype=np.float32)
    pixels = (x[shown, 0].float().cpu() * STD + MEAN).clamp(0, 1).numpy()
    for k in range(len(shown)):
        top, left = (k // cols) * cell_h + cap, (k % cols) * cell_w + gap // 2
        sheet[top : top + 28, left : left + 28] = pixels[k]

    width = cols * 0.95
    height = width * sheet.shape[0] / sheet.shape[1] + 0.6
    fig = _figure(width, height, layout=None)
    head = title + (f"\n{subtitle}" if subtitle else "")
    if len(shown) < len(wrong):
        head += f" (the first {len(shown)} shown)"
    fig.suptitle(head, fontsize=12, y=1 - 0.06 / height)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1 - 0.6 / height))
    ax.imshow(sheet, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    for k, i in enumerate(shown.tolist()):
        ax.text(
            (k % cols) * cell_w + cell_w / 2 - 0.5,
            (k // cols) * cell_h + cap - 2.5,
            f"true {int(y[i])}, pred {int(pred[i])}",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    if not len(shown):
        ax.text(0, cap, "no test digit is wrong", fontsize=12)
    _save(fig, path, title)


def _below(ax, xs, series, bottom: float, fmt: str) -> None:
    """Name the points that fall below a zoomed axis, so nothing is hidden silently."""
    off = [
        f"{name} {fmt.format(v)} at epoch {x}"
        for name, vs in series
        for x, v in zip(xs, vs, strict=True)
        if v < bottom
    ]
    if off:
        text = "below the axis: " + ", ".join(off[:4]) + (" …" if len(off) > 4 else "")
        ax.text(0.01, 0.98, text, transform=ax.transAxes, fontsize=8, color="0.35", va="top")


def curves_png(metrics: dict, path: Path) -> None:
    """Accuracy (zoomed on the last points) and loss (log scale) against epoch, train and test."""
    from matplotlib.ticker import (
        FormatStrFormatter,
        LogLocator,
        MaxNLocator,
        MultipleLocator,
        NullFormatter,
    )

    rows = metrics["epochs"]
    xs = [r["epoch"] for r in rows]
    final = rows[-1]
    title = (
        f"MNIST, model {metrics['model']} ({metrics['params']:,} parameters), "
        f"seed {metrics['seed']}: final test accuracy {final['test_acc']:.2f}% "
        f"after epoch {final['epoch']}"
    )
    fig = _figure(11, 4.3)
    fig.suptitle(title, fontsize=12)
    acc, loss = fig.subplots(1, 2)

    series = [("train", [r["train_acc"] for r in rows]), ("test", [r["test_acc"] for r in rows])]
    for (name, vs), colour in zip(series, (BLUE, ORANGE), strict=True):
        label = f"{name} (final {vs[-1]:.2f}%)"
        acc.plot(xs, vs, "o-", color=colour, ms=4, lw=1.6, label=label)
    values = [v for _, vs in series for v in vs]
    bottom = -math.inf
    if final["test_acc"] >= 98.0:
        # Zoom on what matters once the run is good: the first epochs would squash the last ones.
        bottom = max(97.0, min(values) - 0.2)
        acc.set_ylim(bottom, min(100.0, max(max(values), TARGET) + 0.15))
        acc.axhline(TARGET, ls="--", lw=1, color="0.4", label=f"{TARGET}%")
    _below(acc, xs, series, bottom, "{:.2f}%")
    acc.set_title("accuracy (%)")
    acc.yaxis.set_major_formatter(FormatStrFormatter("%.1f"))
    acc.legend(loc="lower right", fontsize=9)

    for key, name, colour in (("train_loss", "train", BLUE), ("test_loss", "test", ORANGE)):
        loss.plot(xs, [r[key] for r in rows], "o-", color=colour, ms=4, lw=1.6, label=name)
    loss.set_yscale("log")
    loss.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    loss.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    loss.yaxis.set_minor_formatter(NullFormatter())
    loss.set_title("loss (mean NLL, log scale)")
    loss.legend(loc="upper right", fontsize=9)

    for ax in (acc, loss):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(
            MultipleLocator(1) if len(xs) <= 20 else MaxNLocator(integer=True)
        )
        ax.set_xlim(min(xs) - 0.5, max(xs) + 0.5)
        ax.grid(True, color="0.9")
    _save(fig, path, title)


def write_pictures(
    metrics: dict, x: torch.Tensor, y: torch.Tensor, pred: torch.Tensor, out: Path
) -> None:
    misclassified_png(
        x,
        y,
        pred,
        out / "mnist_misclassified.png",
        metrics["epochs"][-1]["epoch"],
        f"model {metrics['model']}, seed {metrics['seed']}",
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

    from backprop_xlsx.writer import style_series

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
    from backprop_xlsx.package import transplant_sheets

    check_workbook(workbook)
    with tempfile.TemporaryDirectory(prefix=".mnist-sheet-", dir=workbook.parent) as folder:
        tmp = Path(folder) / "mnist.xlsx"
        build_sheet(metrics, tmp)
        transplant_sheets(tmp, workbook, [SHEET])


def misclassified_from_checkpoint(
    checkpoint: Path, data_dir: str | None, path: Path
) -> tuple[int, int | None]:
    """Redraw the misclassified PNG from a checkpoint, without training.

    Returns the number of wrong test digits now and the number the run recorded for that epoch
    (None when the checkpoint's metrics do not have it).
    """
    from mnist.data import load
    from mnist.model import MODELS
    from mnist.train import test

    ckpt = load_checkpoint(checkpoint)
    try:
        config, epoch = ckpt["config"], ckpt["epoch"]
        model = MODELS[config["model"]]()
        model.load_state_dict(ckpt["model"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise BpxlError(f"{checkpoint} is not an mnist.train checkpoint ({exc})") from exc
    data = load(data_dir)
    _, _, pred = test(model, data.test_x, data.test_y)
    wrong = int((pred != data.test_y).sum())
    subtitle = f"model {config['model']}, seed {config['seed']}"
    misclassified_png(data.test_x, data.test_y, pred, path, epoch, subtitle)
    rows = [r for r in ckpt.get("metrics", {}).get("epochs", []) if r.get("epoch") == epoch]
    total = len(data.test_y)
    recorded = round(total * (1 - rows[-1]["test_acc"] / 100)) if rows else None
    return wrong, recorded


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m mnist.export",
        description="Redraw a finished run's sheet and pictures without retraining.",
    )
    p.add_argument("--metrics", default="outputs/mnist_metrics.json", help="metrics JSON")
    p.add_argument("--workbook", help="the .xlsx to put the sheet MNIST into")
    p.add_argument("--curves", metavar="PNG", help="redraw the curves PNG from --metrics")
    p.add_argument(
        "--misclassified",
        metavar="PNG",
        help="redraw the misclassified digits from --checkpoint (evaluates the test set)",
    )
    p.add_argument(
        "--checkpoint",
        default="outputs/checkpoints/mnist_last.pt",
        help="checkpoint for --misclassified (default outputs/checkpoints/mnist_last.pt)",
    )
    p.add_argument("--data-dir", help="folder with the IDX files (default: $MNIST_DATA, ./data)")
    args = p.parse_args(argv)
    try:
        if args.workbook is None and args.curves is None and args.misclassified is None:
            raise BpxlError("nothing to do: give --workbook, --curves and/or --misclassified")
        if args.misclassified is not None:
            wrong, recorded = misclassified_from_checkpoint(
                Path(args.checkpoint), args.data_dir, Path(args.misclassified)
            )
            print(f"wrote {args.misclassified} ({wrong} wrong test digits)")
            if recorded is not None and recorded != wrong:
                print(
                    f"note: the run recorded {recorded} wrong for this epoch, not {wrong}",
                    file=sys.stderr,
                )
        if args.workbook is None and args.curves is None:
            return 0
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
