"""The trained net inside the workbook: sheets `MNIST digits`, `MNIST weights` and `MNIST net`.

    python -m mnist.netsheet --checkpoint outputs/checkpoints/mnist_last.pt \\
        --workbook outputs/backprop.xlsx [--data-dir DIR] [--model NAME] [--images 100]

A learner types an image number and watches the digit go through every feature map, by live
formulas, to the predicted digit (docs/mnist.md describes the sheets). They are written by
backprop_xlsx/cnn/sheets.py; this module adds what needs torch (reading the model, predicting,
picking the digits), built alone and transplanted atomically, so every other sheet stays byte
for byte as it was.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from backprop_xlsx.cnn import layout as L
from backprop_xlsx.cnn.sheets import Digits, build_sheets
from backprop_xlsx.errors import BpxlError
from mnist.netmodel import check_forward, read_model

IMAGES = 100  # rows of the digits sheet by default: every wrong test digit first, up to this


def predict(model: nn.Module, pixels: np.ndarray, batch: int = 1000) -> np.ndarray:
    """The model's predicted digit for raw uint8 images (n, 784), normalised as in training."""
    from mnist.data import normalise

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad():
            for start in range(0, len(pixels), batch):
                x = normalise(pixels[start : start + batch], device).reshape(-1, 1, 28, 28)
                out.append(model(x).argmax(1).cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out)


def pick_digits(
    model: nn.Module,
    pixels: np.ndarray,
    labels: np.ndarray,
    n: int,
    predicted: np.ndarray | None = None,
) -> Digits:
    """Every test image the model gets wrong (the first n), then the first right ones up to n.

    `predicted`: the model's predictions on all of `pixels` when the caller has them (training
    just tested the model), which saves evaluating it again.
    """
    if not 1 <= n <= min(L.MAX_IMAGES, len(pixels)):
        raise BpxlError(f"--images must be from 1 to {min(L.MAX_IMAGES, len(pixels))}, not {n}")
    if predicted is None:
        predicted = predict(model, pixels)
    predicted = np.asarray(predicted)
    wrong = np.flatnonzero(predicted != labels)[:n]
    right = np.flatnonzero(predicted == labels)[: n - len(wrong)]
    index = np.sort(np.concatenate([wrong, right]))
    return Digits(index, pixels[index], labels[index], predicted[index])


# ---------------------------------------------------------------------------------------------
# The three sheets


def write_net_sheets(
    model: nn.Module,
    pixels: np.ndarray,
    labels: np.ndarray,
    workbook: Path,
    *,
    images: int = IMAGES,
    source: str = "the trained model",
    predicted: np.ndarray | None = None,
    metrics: dict | None = None,
) -> Digits:
    """Put the three sheets into `workbook` (created if missing), replacing old ones of the same
    names and keeping every other sheet. `pixels` (n, 784) uint8 and `labels` are the test set;
    `predicted`, if given, the model's predictions on it (see pick_digits). With `metrics` (a
    run's record) the sheet MNIST goes in too: the workbook is written once, atomically."""
    from backprop_xlsx.xlsx.transplant import transplant_sheets
    from mnist import sheet

    sheet.check_workbook(workbook)
    net = read_model(model)
    digits = pick_digits(model, pixels, labels, images, predicted)
    check_forward(model, net, torch.from_numpy(digits.pixels[:4].astype(np.int64)))
    with tempfile.TemporaryDirectory(prefix=".mnist-net-", dir=workbook.parent) as folder:
        tmp = Path(folder) / "net.xlsx"
        build_sheets(net.arch, net.weights, digits, tmp, source)
        names = list(L.SHEETS)
        if metrics is not None:  # into the small temporary workbook first, not the user's
            book = Path(folder) / "mnist.xlsx"
            sheet.build_sheet(metrics, book)
            transplant_sheets(book, tmp, [sheet.SHEET])
            names.insert(0, sheet.SHEET)
        transplant_sheets(tmp, workbook, names)
    return digits


def read_test_set(data_dir: str | Path | None) -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 test images as raw uint8 (10000, 784) and their labels, checked."""
    from mnist.data import read_split, read_sums, resolve_dir

    folder = resolve_dir(data_dir)
    images, labels = read_split(folder, "test", read_sums(folder))
    return images.reshape(len(images), -1), labels.astype(np.int64)


def model_from_checkpoint(path: Path, name: str | None) -> tuple[nn.Module, str]:
    """The model a checkpoint of mnist.train holds (its own model name unless `name` is given)."""
    from mnist.model import MODELS
    from mnist.records import load_checkpoint

    ckpt = load_checkpoint(path)
    try:
        name = name or ckpt["config"]["model"]
        if name not in MODELS:
            raise BpxlError(f"unknown model {name!r} (choose from {', '.join(sorted(MODELS))})")
        model = MODELS[name]()
        model.load_state_dict(ckpt["learner"]["model"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise BpxlError(f"{path} is not an mnist.train checkpoint of model {name} ({exc})") from exc
    return model.eval(), name


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m mnist.netsheet",
        description="Write the trained net as live-formula sheets into a workbook.",
    )
    p.add_argument("--checkpoint", required=True, help="a checkpoint written by mnist.train")
    p.add_argument("--workbook", required=True, help="the .xlsx to put the sheets into")
    p.add_argument("--data-dir", help="folder with the IDX files (default: $MNIST_DATA, ./data)")
    p.add_argument("--model", help="model name (default: the one in the checkpoint)")
    p.add_argument("--images", type=int, default=IMAGES, help=f"test images (default {IMAGES})")
    args = p.parse_args(argv)
    try:
        model, name = model_from_checkpoint(Path(args.checkpoint), args.model)
        pixels, labels = read_test_set(args.data_dir)
        digits = write_net_sheets(
            model,
            pixels,
            labels,
            Path(args.workbook),
            images=args.images,
            source=f"{args.checkpoint} (model {name})",
        )
    except BpxlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    wrong = int((digits.predicted != digits.labels).sum())
    print(
        f"wrote sheets {', '.join(L.SHEETS)} into {args.workbook} "
        f"({len(digits.index)} test images, {wrong} of them misclassified)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
