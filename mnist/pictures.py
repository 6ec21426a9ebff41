"""The run's two pictures: accuracy and loss curves, and the misclassified test digits.

matplotlib's object API on the Agg canvas: no pyplot, no global backend. Written atomically, with
the picture's title also in the PNG's Title text chunk (the tests read it back).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from backprop_xlsx.xlsx.fileio import atomic_output
from mnist.data import MEAN, STD

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
