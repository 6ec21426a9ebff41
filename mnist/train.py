"""Train an MNIST CNN: `python -m mnist.train [--model ours|wide|seed] [--epochs N] ...`.

The command line of pytorch/examples' mnist/main.py: flags over the model's recipe
(mnist/training.py), train() and test() once per epoch, and after every epoch the metrics, the
checkpoints and (with --workbook) the sheet MNIST, so an interrupted run loses at most the running
epoch and --resume continues it with the same numbers. At the end the last epoch's sheet and the
trained net's sheets go into the workbook in one atomic write. The run ends with where every
second went.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import signal
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from tqdm import tqdm

from backprop_xlsx.cnn import layout as L
from backprop_xlsx.errors import BpxlError
from mnist import pictures, records, sheet
from mnist.data import COUNTS, Mnist, load
from mnist.model import MODELS, count_params, multiply_adds, summary
from mnist.records import plural
from mnist.training import RECIPES, Learner, Recipe, make_learner, reestimate_bn, test, train


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m mnist.train", description="Train a small CNN on MNIST."
    )
    p.add_argument(
        "--model",
        choices=list(MODELS),
        default="ours",
        help="ours (default), wide (the 11,672-parameter net before it) or seed (the baseline)",
    )
    p.add_argument("--epochs", type=int, help="epochs (default: the model's recipe)")
    p.add_argument("--batch-size", type=int, help="training batch size (default: the recipe's)")
    p.add_argument("--lr", type=float, help="(peak) learning rate (default: the recipe's)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: all cores)")
    p.add_argument("--data-dir", help="folder with the IDX files (default: $MNIST_DATA, ./data)")
    p.add_argument("--limit", type=int, help="train on the first N images only (smoke runs)")
    p.add_argument("--out", default="outputs", help="output folder (default outputs/)")
    p.add_argument(
        "--workbook",
        help="also write into this .xlsx the sheet MNIST (after every epoch) and, at the end, "
        "the trained net as live formulas (MNIST digits, MNIST weights, MNIST net)",
    )
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
    seed: int
    limit: int | None
    recipe: Recipe


def make_config(args: argparse.Namespace) -> Config:
    """Flags over the model's recipe, each checked so bad values fail before any work."""
    recipe = RECIPES[args.model]
    flags = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr}
    recipe = replace(recipe, **{k: v for k, v in flags.items() if v is not None})
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
    return Config(args.model, args.seed, args.limit, recipe)


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


def check_outputs(out: Path, workbook: str | None) -> None:
    """Fail on an unwritable --out or a bad --workbook now, not after minutes of training.

    Nothing is created yet: a run that fails before its first epoch leaves no empty folders.
    """
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise BpxlError(f"cannot create --out {out}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BpxlError(f"cannot create --out {out}: {existing} is not writable")
    if out.exists() and (out / "checkpoints").exists():
        if not os.access(out / "checkpoints", os.W_OK | os.X_OK):
            raise BpxlError(f"--out {out / 'checkpoints'} is not writable")
    if workbook is not None:
        sheet.check_workbook(Path(workbook))


def settings(config: dict) -> dict:
    """A config with the recipe's fields at the top level, as the flags name them."""
    return {**{k: v for k, v in config.items() if k != "recipe"}, **config.get("recipe", {})}


class Run:
    """One run's state between epochs: the learner, its record and where it is written."""

    def __init__(self, cfg: Config, learner: Learner, out: Path, workbook: str | None) -> None:
        self.cfg, self.learner, self.out = cfg, learner, out
        self.workbook = Path(workbook) if workbook is not None else None
        self.last_path = out / "checkpoints" / "mnist_last.pt"
        self.best_path = out / "checkpoints" / "mnist_best.pt"
        model = learner.model
        self.metrics = {
            "model": cfg.model,
            "params": count_params(model),
            "multiply_adds": multiply_adds(model),
            "seed": cfg.seed,
            "device": str(next(model.parameters()).device),
            "config": asdict(cfg),
            "epochs": [],
        }

    def resume(self) -> None:
        """Continue from the last checkpoint, which must have been made with the same config."""
        if not self.last_path.is_file():
            print(f"--resume: no checkpoint at {self.last_path}, starting from epoch 1")
            return
        ckpt = records.load_checkpoint(self.last_path)
        if ckpt["config"] != asdict(self.cfg):
            diff = [
                k
                for k, v in settings(asdict(self.cfg)).items()
                if settings(ckpt["config"]).get(k) != v
            ]
            raise BpxlError(
                f"--resume: {self.last_path} was made with other settings ({', '.join(diff)}); "
                "pass the same flags as the interrupted run"
            )
        self.learner.load_state_dict(ckpt["learner"])
        records.set_rng_state(ckpt["rng"])
        self.metrics["epochs"] = ckpt["metrics"]["epochs"]
        print(f"resumed from {self.last_path} after epoch {ckpt['epoch']}")

    def record(self, row: dict) -> None:
        """Append an epoch and write metrics, workbook sheet and checkpoints (best and last)."""
        best = max((r["test_acc"] for r in self.metrics["epochs"]), default=-1.0)
        self.metrics["epochs"].append(row)
        try:
            (self.out / "checkpoints").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BpxlError(f"cannot create --out {self.out}: {exc.strerror or exc}") from exc
        records.write_metrics(self.metrics, self.out)
        # ~0.2 s: an interrupted run's sheet shows its epochs; the last epoch's sheet goes in
        # with the trained net's sheets (finish), so the workbook is written once at the end
        if self.workbook is not None and row["epoch"] < self.cfg.recipe.epochs:
            sheet.write_workbook(self.metrics, self.workbook)
        state = {
            "epoch": row["epoch"],
            "config": asdict(self.cfg),
            "learner": self.learner.state_dict(),
            "rng": records.rng_state(),
            "metrics": self.metrics,
        }
        if row["test_acc"] > best:
            records.save_checkpoint(state, self.best_path)
        records.save_checkpoint(state, self.last_path)


def run_epoch(
    run: Run, data: Mnist, train_x: torch.Tensor, train_y: torch.Tensor, epoch: int, progress: bool
) -> tuple[dict, torch.Tensor, dict[str, float]]:
    """train() then test() for one epoch: the record's row, the test predictions, the seconds
    spent training, testing and re-estimating BatchNorm (after the last epoch)."""
    learner, epochs = run.learner, run.cfg.recipe.epochs
    t0 = time.perf_counter()
    lr = learner.opt.param_groups[0]["lr"]

    def bar(steps: range):
        return tqdm(
            steps,
            desc=f"epoch {epoch}/{epochs}",
            leave=False,
            disable=not progress,
            unit="batch",
            mininterval=0.5,
            file=sys.stderr,
        )

    train_loss, train_acc = train(learner, train_x, train_y, bar)
    t1 = t_bn = time.perf_counter()
    if epoch == epochs and learner.recipe.reestimate_bn:
        before = test(learner.model, data.test_x, data.test_y)[1]
        t_bn = time.perf_counter()
        reestimate_bn(learner.model, train_x)
        print(
            f"BatchNorm statistics re-estimated on the {len(train_x):,} training digits, "
            f"unwarped (test accuracy before: {before:.2f}%)"
        )
    t2 = time.perf_counter()
    test_loss, test_acc, pred = test(learner.model, data.test_x, data.test_y)
    t3 = time.perf_counter()
    print(
        f"epoch {epoch:2d}/{epochs}  train loss {train_loss:.4f} acc {train_acc:6.2f}%"
        f"  test loss {test_loss:.4f} acc {test_acc:6.2f}%  lr {lr:.5f}  {t3 - t0:5.1f}s",
        flush=True,
    )
    row = {
        "epoch": epoch,
        "train_loss": train_loss,
        "train_acc": train_acc,
        "test_loss": test_loss,
        "test_acc": test_acc,
        "lr": lr,
        "seconds": round(t3 - t0, 3),
    }
    spent = {"train": t1 - t0, "test": t3 - t2 + t_bn - t1, "bn_reestimate": t2 - t_bn}
    return row, pred, spent


def start(args: argparse.Namespace, cfg: Config, data: Mnist, device: torch.device) -> Run:
    """The seeded model and learner (resumed when asked), its torchinfo table and one line."""
    torch.manual_seed(cfg.seed)
    g = torch.Generator(device=device).manual_seed(cfg.seed)
    model = MODELS[cfg.model]().to(device)
    print(summary(model))
    model = model.to(memory_format=torch.channels_last)
    n_train = len(data.train_x[: cfg.limit])
    steps = math.ceil(n_train / cfg.recipe.batch_size)
    run = Run(cfg, make_learner(model, cfg.recipe, steps, g), Path(args.out), args.workbook)
    if args.resume:
        run.resume()
    m, r = run.metrics, cfg.recipe
    print(
        f"model {cfg.model}: {m['params']:,} parameters, {m['multiply_adds']:,} multiply-adds "
        f"per image | device {device} ({plural(torch.get_num_threads(), 'thread')}) | train "
        f"{n_train:,} test {len(data.test_x):,} from "
        f"{data.source} | {plural(r.epochs, 'epoch')}, batch {r.batch_size}, lr {r.lr:g}, "
        f"seed {cfg.seed}",
        flush=True,
    )
    return run


def finish(run: Run, data: Mnist, pred: torch.Tensor | None, last: int) -> None:
    """The pictures once the last epoch is done (from the checkpoint for a finished run)."""
    m, epochs = run.metrics, run.cfg.recipe.epochs
    if not m["epochs"]:
        raise BpxlError(f"--resume: {run.last_path} holds no finished epoch")
    if last < epochs:
        print(f"stopped after epoch {last} of {epochs}; continue with the same flags + --resume")
        return
    if pred is None:  # resumed a finished run: nothing trained, pictures from the checkpoint
        print(f"--resume: all {plural(epochs, 'epoch')} are already done in {run.last_path}")
        _, _, pred = test(run.learner.model, data.test_x, data.test_y)
    if run.workbook is not None:  # sheet MNIST and the trained net, as live formulas, at once
        from mnist import netsheet

        source = f"{run.last_path} (model {run.cfg.model}, epoch {m['epochs'][-1]['epoch']})"
        netsheet.write_net_sheets(
            run.learner.model,
            data.test_pixels,
            data.test_y.cpu().numpy(),
            run.workbook,
            source=source,
            predicted=pred.cpu().numpy(),
            metrics=m,
        )
    pictures.write_pictures(m, data.test_x, data.test_y, pred, run.out)


def main(argv: list[str] | None = None) -> int:
    t_start = time.perf_counter()
    spent: Counter[str] = Counter()
    args = parse_args(argv)
    cfg = make_config(args)
    check_outputs(Path(args.out), args.workbook)
    device = pick_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    data = load(args.data_dir, device)
    train_x, train_y = data.train_x[: cfg.limit], data.train_y[: cfg.limit]
    spent["data"] = time.perf_counter() - t0
    run = start(args, cfg, data, device)

    last = cfg.recipe.epochs if args.stop_after is None else min(cfg.recipe.epochs, args.stop_after)
    pred = None
    for epoch in range(len(run.metrics["epochs"]) + 1, last + 1):
        row, pred, spent_epoch = run_epoch(run, data, train_x, train_y, epoch, not args.no_progress)
        t0 = time.perf_counter()
        run.record(row)
        spent.update(spent_epoch, records=time.perf_counter() - t0)
    t0 = time.perf_counter()
    finish(run, data, pred, last)
    if args.workbook is not None:
        n = plural(len(run.metrics["epochs"]), "epoch")
        print(f"wrote sheet MNIST ({n}) into {args.workbook}")
        if last == cfg.recipe.epochs:
            print(f"wrote the trained net's sheets ({', '.join(L.SHEETS)}) into {args.workbook}")
    spent["pictures"] = time.perf_counter() - t0
    final = run.metrics["epochs"][-1]
    print(
        f"final test accuracy {final['test_acc']:.2f}% after epoch {final['epoch']} | "
        f"{run.metrics['params']:,} parameters"
    )
    total = time.perf_counter() - t_start
    spent["setup"] = total - sum(spent.values())
    print(f"time {total:.1f}s = " + " + ".join(f"{k} {v:.1f}s" for k, v in spent.items()))
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def cli(argv: list[str] | None = None) -> int:
    """main() with every user-facing failure as one `error:` line and exit status 2.

    SIGTERM (what `timeout` and service managers send) is handled as Ctrl-C is: the temporary
    files of the write in progress are removed and the last finished epoch stays saved.
    """
    previous = signal.signal(signal.SIGTERM, _interrupt)  # cli() runs in the main thread
    try:
        return main(argv)
    except BpxlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "error: interrupted; every finished epoch is saved, --resume continues after it",
            file=sys.stderr,
        )
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def exit_now(code: int) -> None:
    """sys.exit(code), without the interpreter's last full garbage collection.

    At exit Python collects every object once more, which with torch loaded took 1.3-1.7 s of
    a run; gc.freeze() moves every object where the collector never looks (exit: 0.4 s).
    Objects are still freed by reference counting, and every file of the run is closed and
    renamed before this.
    """
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    exit_now(cli())
