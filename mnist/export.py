"""Redraw a finished run's sheet and pictures without retraining, from what the run recorded
(its metrics JSON, its checkpoint), so a changed chart or picture needs no new run:

    python -m mnist.export --metrics outputs/mnist_metrics.json --workbook outputs/backprop.xlsx
    python -m mnist.export --curves outputs/mnist_curves.png \\
        --checkpoint outputs/checkpoints/mnist_last.pt \\
        --misclassified outputs/mnist_misclassified.png
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from backprop_xlsx.errors import BpxlError
from mnist import pictures, records, sheet
from mnist.data import load
from mnist.model import MODELS
from mnist.records import plural
from mnist.training import test


def misclassified_from_checkpoint(
    checkpoint: Path, data_dir: str | None, path: Path
) -> tuple[int, int | None]:
    """Redraw the misclassified PNG from a checkpoint, without training.

    Returns the number of wrong test digits now and the number the run recorded for that epoch
    (None when the checkpoint's metrics do not have it).
    """
    ckpt = records.load_checkpoint(checkpoint)
    try:
        config, epoch = ckpt["config"], ckpt["epoch"]
        model = MODELS[config["model"]]()
        model.load_state_dict(ckpt["learner"]["model"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise BpxlError(f"{checkpoint} is not an mnist.train checkpoint ({exc})") from exc
    data = load(data_dir)
    _, _, pred = test(model, data.test_x, data.test_y)
    wrong = int((pred != data.test_y).sum())
    subtitle = f"model {config['model']}, seed {config['seed']}"
    pictures.misclassified_png(data.test_x, data.test_y, pred, path, epoch, subtitle)
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
        metrics = records.read_metrics(Path(args.metrics))
        if args.workbook is not None:
            sheet.write_workbook(metrics, Path(args.workbook))
            n = plural(len(metrics["epochs"]), "epoch")
            print(f"wrote sheet {sheet.SHEET} ({n}) into {args.workbook}")
        if args.curves is not None:
            pictures.curves_png(metrics, Path(args.curves))
            print(f"wrote {args.curves}")
    except BpxlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
