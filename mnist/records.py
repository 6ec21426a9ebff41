"""What a run records: its metrics (JSON + CSV) and its checkpoints.

Every file is written to a temporary file in its folder and renamed over the target, so an
interrupted run leaves the previous complete file, never half of one.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import torch

from backprop_xlsx.errors import BpxlError
from backprop_xlsx.xlsx.fileio import atomic_output, atomic_write_text

COLUMNS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds")


def plural(n: int, word: str) -> str:
    """ "1 epoch", "2 epochs"."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def write_metrics(metrics: dict, out: Path) -> None:
    """mnist_metrics.json (the whole record) and mnist_metrics.csv (one row per epoch)."""
    atomic_write_text(out / "mnist_metrics.json", json.dumps(metrics, indent=1) + "\n")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(metrics["epochs"])
    atomic_write_text(out / "mnist_metrics.csv", buf.getvalue())


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


def rng_state() -> dict:
    """torch's global random states, CPU and CUDA (dropout draws there), for --resume."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
