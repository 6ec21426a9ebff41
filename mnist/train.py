"""Train an MNIST CNN: `python -m mnist.train [--model ours|seed] [--epochs N] ...`.

The shape of pytorch/examples' mnist/main.py (train(), test(), flags, main()), the spirit of
airbench: the data sits on the device as tensors, augmentation is one batched affine warp, every
hyperparameter is in RECIPES just below, and the run ends with where every second went.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from backprop_xlsx.errors import BpxlError
from mnist import export
from mnist.augment import random_affine
from mnist.data import COUNTS, load
from mnist.model import MODELS, count_params, summary


# ---- every hyperparameter, in one place
@dataclass(frozen=True)
class Recipe:
    epochs: int
    batch_size: int
    lr: float  # peak learning rate of the one-cycle schedule, or the constant one
    momentum: float
    nesterov: bool
    weight_decay: float
    schedule: str  # "onecycle": warm up for `warmup` of the steps, then cosine to ~0; "constant"
    warmup: float
    augment: str  # a key of AUGMENTS


RECIPES = {
    # Annealing to ~0 makes the final epoch the best one, which is the epoch that counts.
    "ours": Recipe(
        epochs=15,
        batch_size=128,
        lr=0.1,
        momentum=0.9,
        nesterov=True,
        weight_decay=5e-4,
        schedule="onecycle",
        warmup=0.2,
        augment="affine",
    ),
    # The baseline as it was: plain SGD at a constant rate and its own augmentation.
    "seed": Recipe(
        epochs=19,
        batch_size=128,
        lr=0.01,
        momentum=0.9,
        nesterov=False,
        weight_decay=0.0,
        schedule="constant",
        warmup=0.0,
        augment="seed",
    ),
}


def augment_affine(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Ours: every image rotated ±8°, shifted ±5% and scaled 0.95-1.05.

    Mild on purpose: ±10°/8%/10% left the 7.6k-parameter net underfitting (train 99.3% on the
    augmented images) and ended 0.04-0.05 points lower on seeds 3 and 4.
    """
    return random_affine(x, g, degrees=8, translate=0.05, scale=(0.95, 1.05))


def augment_seed(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The baseline's RandomApply(CenterCrop(22), p=0.1) → Resize(28) → RandomRotation(±5°).

    Batched: CenterCrop(22) then Resize(28) is a zoom by 28/22 about the centre, in the same warp.
    """
    return random_affine(x, g, degrees=5, scale=(28 / 22, 28 / 22), scale_p=0.1)


AUGMENTS: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {
    "affine": augment_affine,
    "seed": augment_seed,
}
TEST_BATCH = 1000
# -----------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m mnist.train", description="Train a small CNN on MNIST."
    )
    p.add_argument(
        "--model",
        choices=sorted(MODELS),
        default="ours",
        help="ours (default) or seed, the 18,050-parameter baseline",
    )
    p.add_argument("--epochs", type=int, help="epochs (default: the model's recipe, ≤ 20)")
    p.add_argument("--batch-size", type=int, help="training batch size (default 128)")
    p.add_argument("--lr", type=float, help="(peak) learning rate (default: the recipe's)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: all cores)")
    p.add_argument("--data-dir", help="folder with the IDX files (default: $MNIST_DATA, ./data)")
    p.add_argument("--limit", type=int, help="train on the first N images only (smoke runs)")
    p.add_argument("--out", default="outputs", help="output folder (default outputs/)")
    p.add_argument("--workbook", help="also write the sheet MNIST into this .xlsx")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints")
    p.add_argument(
        "--stop-after",
        type=int,
        metavar="EPOCH",
        help="stop after this epoch as if interrupted (--resume continues)",
    )
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    return p.parse_args(argv)


@dataclass(frozen=True)
class Config:
    """What determines a run's numbers; stored in checkpoints so --resume can check it."""

    model: str
    epochs: int
    batch_size: int
    lr: float
    seed: int
    limit: int | None
    recipe: Recipe


def make_config(args: argparse.Namespace) -> Config:
    """Flags over the model's recipe, each checked so bad values fail before any work."""
    recipe = RECIPES[args.model]
    recipe = replace(
        recipe,
        epochs=args.epochs if args.epochs is not None else recipe.epochs,
        batch_size=args.batch_size if args.batch_size is not None else recipe.batch_size,
        lr=args.lr if args.lr is not None else recipe.lr,
    )
    if not 1 <= recipe.epochs <= 1000:
        raise BpxlError(f"--epochs must be between 1 and 1000, not {recipe.epochs}")
    if not 1 <= recipe.batch_size <= COUNTS["train"]:
        raise BpxlError(f"--batch-size must be between 1 and 60000, not {recipe.batch_size}")
    if not (math.isfinite(recipe.lr) and recipe.lr > 0):
        raise BpxlError(f"--lr must be a positive number, not {recipe.lr}")
    if args.limit is not None and not 1 <= args.limit <= COUNTS["train"]:
        raise BpxlError(f"--limit must be between 1 and 60000, not {args.limit}")
    if args.stop_after is not None and args.stop_after < 1:
        raise BpxlError(f"--stop-after must be at least 1, not {args.stop_after}")
    if args.threads is not None and args.threads < 1:
        raise BpxlError(f"--threads must be at least 1, not {args.threads}")
    return Config(
        args.model, recipe.epochs, recipe.batch_size, recipe.lr, args.seed, args.limit, recipe
    )


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BpxlError("--device cuda: no CUDA GPU is available (try --device auto)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise BpxlError("--device mps: Apple's MPS is not available (try --device auto)")
    return torch.device(name)


def make_optimizer(model: nn.Module, cfg: Config, steps_per_epoch: int):
    r = cfg.recipe
    opt = torch.optim.SGD(
        model.parameters(),
        lr=cfg.lr,
        momentum=r.momentum,
        nesterov=r.nesterov,
        weight_decay=r.weight_decay,
    )
    if r.schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt,
            max_lr=cfg.lr,
            total_steps=cfg.epochs * steps_per_epoch,
            pct_start=r.warmup,
            anneal_strategy="cos",
            div_factor=10,
            final_div_factor=1000,
            cycle_momentum=False,
        )
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    return opt, sched


def train(model, x_all, y_all, opt, sched, augment, g, batch_size, epoch, epochs, progress):
    """One epoch over a fresh permutation; returns mean loss and accuracy (%) on what it saw."""
    model.train()
    n = len(x_all)
    order = torch.randperm(n, generator=g, device=x_all.device)
    loss_sum, correct, seen = 0.0, 0, 0
    bar = tqdm(
        range(0, n, batch_size),
        desc=f"epoch {epoch}/{epochs}",
        leave=False,
        disable=not progress,
        unit="batch",
        mininterval=0.5,
        file=sys.stderr,
    )
    for start in bar:
        idx = order[start : start + batch_size]
        x = augment(x_all[idx], g).contiguous(memory_format=torch.channels_last)
        y = y_all[idx]
        out = model(x)
        loss = F.nll_loss(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss_sum += loss.item() * len(idx)
        correct += (out.argmax(1) == y).sum().item()
        seen += len(idx)
        if progress:
            bar.set_postfix(
                loss=f"{loss_sum / seen:.4f}", acc=f"{100 * correct / seen:.2f}%", refresh=False
            )
    return loss_sum / seen, 100 * correct / seen


@torch.no_grad()
def test(model, x_all, y_all):
    """Mean loss, accuracy (%) and the predicted labels on the whole test set."""
    model.eval()
    loss_sum, preds = 0.0, []
    for start in range(0, len(x_all), TEST_BATCH):
        x = x_all[start : start + TEST_BATCH].contiguous(memory_format=torch.channels_last)
        out = model(x)
        loss_sum += F.nll_loss(out, y_all[start : start + TEST_BATCH], reduction="sum").item()
        preds.append(out.argmax(1))
    pred = torch.cat(preds)
    correct = int((pred == y_all).sum())  # an exact count: 9944 → 99.44, not 99.44000244
    return loss_sum / len(x_all), 100 * correct / len(x_all), pred


def rng_state(g: torch.Generator) -> dict:
    """Every random state a resumed run needs: CPU, CUDA (dropout draws there) and the data's."""
    state = {"torch": torch.get_rng_state(), "data": g.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def check_outputs(out: Path, workbook: str | None) -> None:
    """Fail on an unwritable --out or a bad --workbook now, not after minutes of training."""
    try:
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BpxlError(f"cannot create --out {out}: {exc.strerror or exc}") from exc
    for folder in (out, out / "checkpoints"):
        if not os.access(folder, os.W_OK | os.X_OK):
            raise BpxlError(f"--out {folder} is not writable")
    if workbook is not None:
        export.check_workbook(Path(workbook))


def main(argv: Sequence[str] | None = None) -> int:
    t_start = time.perf_counter()
    args = parse_args(argv)
    cfg = make_config(args)
    out = Path(args.out)
    check_outputs(out, args.workbook)
    device = pick_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    last_path, best_path = (
        out / "checkpoints" / "mnist_last.pt",
        out / "checkpoints" / "mnist_best.pt",
    )
    ckpt = None
    if args.resume:
        if last_path.is_file():
            ckpt = export.load_checkpoint(last_path)
            if ckpt["config"] != asdict(cfg):
                diff = [k for k, v in asdict(cfg).items() if ckpt["config"].get(k) != v]
                raise BpxlError(
                    f"--resume: {last_path} was made with other settings ({', '.join(diff)}); "
                    "pass the same flags as the interrupted run"
                )
        else:
            print(f"--resume: no checkpoint at {last_path}, starting from epoch 1")

    t0 = time.perf_counter()
    data = load(args.data_dir, device)
    train_x, train_y = data.train_x, data.train_y
    if cfg.limit is not None:
        train_x, train_y = train_x[: cfg.limit], train_y[: cfg.limit]
    t_data = time.perf_counter() - t0

    torch.manual_seed(cfg.seed)
    g = torch.Generator(device=device)
    g.manual_seed(cfg.seed)
    model = MODELS[cfg.model]().to(device)
    params = count_params(model)
    print(summary(model))
    model = model.to(memory_format=torch.channels_last)
    steps = math.ceil(len(train_x) / cfg.batch_size)
    opt, sched = make_optimizer(model, cfg, steps)
    augment = AUGMENTS[cfg.recipe.augment]

    metrics = {
        "model": cfg.model,
        "params": params,
        "seed": cfg.seed,
        "device": str(device),
        "config": asdict(cfg),
        "epochs": [],
    }
    best_acc = -1.0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        g.set_state(ckpt["rng"]["data"])
        if "cuda" in ckpt["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
        metrics["epochs"] = ckpt["metrics"]["epochs"]
        best_acc = max((e["test_acc"] for e in metrics["epochs"]), default=-1.0)
        print(f"resumed from {last_path} after epoch {ckpt['epoch']}")
    first = len(metrics["epochs"]) + 1
    print(
        f"model {cfg.model}: {params:,} parameters | device {device} "
        f"({torch.get_num_threads()} threads) | train {len(train_x):,} test {len(data.test_x):,}"
        f" from {data.source} | {cfg.epochs} epochs, batch {cfg.batch_size}, lr {cfg.lr:g}, "
        f"seed {cfg.seed}",
        flush=True,
    )

    t_train = t_test = t_save = 0.0
    last = cfg.epochs if args.stop_after is None else min(cfg.epochs, args.stop_after)
    pred = None
    for epoch in range(first, last + 1):
        t0 = time.perf_counter()
        lr = opt.param_groups[0]["lr"]
        train_loss, train_acc = train(
            model,
            train_x,
            train_y,
            opt,
            sched,
            augment,
            g,
            cfg.batch_size,
            epoch,
            cfg.epochs,
            not args.no_progress,
        )
        t1 = time.perf_counter()
        test_loss, test_acc, pred = test(model, data.test_x, data.test_y)
        t2 = time.perf_counter()
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "train_acc": train_acc,
            "test_loss": test_loss,
            "test_acc": test_acc,
            "lr": lr,
            "seconds": round(t2 - t0, 3),
        }
        metrics["epochs"].append(row)
        print(
            f"epoch {epoch:2d}/{cfg.epochs}  train loss {train_loss:.4f} acc {train_acc:6.2f}%"
            f"  test loss {test_loss:.4f} acc {test_acc:6.2f}%  lr {lr:.5f}  {t2 - t0:5.1f}s",
            flush=True,
        )
        state = {
            "epoch": epoch,
            "config": asdict(cfg),
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "rng": rng_state(g),
            "metrics": metrics,
        }
        export.write_metrics(metrics, out)
        if args.workbook is not None:  # ~0.2 s: an interrupted run's sheet shows its epochs
            export.write_workbook(metrics, Path(args.workbook))
        if test_acc > best_acc:
            best_acc = test_acc
            export.save_checkpoint(state, best_path)
        export.save_checkpoint(state, last_path)
        t_train += t1 - t0
        t_test += t2 - t1
        t_save += time.perf_counter() - t2

    if last < cfg.epochs:
        print(
            f"stopped after epoch {last} of {cfg.epochs}; continue with the same flags + --resume"
        )
    if not metrics["epochs"]:
        raise BpxlError(f"--resume: {last_path} holds no finished epoch")
    t0 = time.perf_counter()
    if last == cfg.epochs:
        if pred is None:  # resumed a finished run: nothing trained, pictures from the checkpoint
            print(f"--resume: all {cfg.epochs} epochs are already done in {last_path}")
            _, _, pred = test(model, data.test_x, data.test_y)
            if args.workbook is not None:
                export.write_workbook(metrics, Path(args.workbook))
        export.write_pictures(metrics, data.test_x, data.test_y, pred, out)
    if args.workbook is not None:
        print(f"wrote sheet MNIST ({len(metrics['epochs'])} epochs) into {args.workbook}")
    t_export = time.perf_counter() - t0
    final = metrics["epochs"][-1]
    total = time.perf_counter() - t_start
    print(
        f"final test accuracy {final['test_acc']:.2f}% after epoch {final['epoch']} | "
        f"{params:,} parameters"
    )
    print(
        f"time {total:.1f}s = data {t_data:.1f}s + train {t_train:.1f}s + test {t_test:.1f}s"
        f" + checkpoints/metrics/workbook {t_save:.1f}s + pictures {t_export:.1f}s"
        f" + setup {total - t_data - t_train - t_test - t_save - t_export:.1f}s"
    )
    return 0


def cli(argv: Sequence[str] | None = None) -> int:
    """main() with every user-facing failure as one `error:` line and exit status 2."""
    try:
        return main(argv)
    except BpxlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "error: interrupted; the last finished epoch is saved, --resume continues",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(cli())
