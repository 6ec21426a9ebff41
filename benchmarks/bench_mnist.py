"""Whole process against whole process: one epoch + test of `--model seed`, two pipelines.

    python benchmarks/bench_mnist.py [--data-dir DIR] [--repeats N]

Ours (`python -m mnist.train --model seed --epochs 1`) against the seed's own pipeline as it was
(`baseline_child`: torchvision, per-sample PIL transforms, DataLoader with 2 workers), each timed
from process start to exit, imports included, because that is the time a user waits. The IDX
files are first unpacked, untimed, into the layout torchvision's download would leave. A
benchmark, not a test: it prints numbers, it asserts nothing (docs/benchmarks.md has them).
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _measure import timed

ROOT = Path(__file__).resolve().parents[1]


def baseline_child(root: str, threads: int | None) -> None:
    """The seed's original pipeline, one epoch and a test pass.

    torchvision.datasets.MNIST; RandomApply(CenterCrop(22), p=0.1) → Resize(28) →
    RandomRotation(±5°) → ToTensor → Normalize per sample; DataLoader(batch 128, shuffle,
    2 workers); the seed net with its nn.Dropout; SGD(0.01, 0.9); a test pass with batch 1000."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from torchvision import datasets, transforms

    sys.path.insert(0, str(ROOT))
    from mnist.model import SeedNet

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(1)
    normalize = transforms.Normalize((0.1307,), (0.3081,))
    train_tf = transforms.Compose(
        [
            transforms.RandomApply([transforms.CenterCrop(22)], p=0.1),
            transforms.Resize((28, 28)),
            transforms.RandomRotation((-5.0, 5.0), fill=0),
            transforms.ToTensor(),
            normalize,
        ]
    )
    test_tf = transforms.Compose([transforms.ToTensor(), normalize])
    train_set = datasets.MNIST(root, train=True, download=False, transform=train_tf)
    test_set = datasets.MNIST(root, train=False, download=False, transform=test_tf)
    kwargs = {"num_workers": 2, "pin_memory": False}
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=128, shuffle=True, **kwargs)
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=1000, shuffle=False, **kwargs)
    model = SeedNet(drop_layer=nn.Dropout)  # the seed's own dropout, one coin per element
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    for x, y in train_loader:
        opt.zero_grad()
        loss = F.nll_loss(model(x), y)
        loss.backward()
        opt.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in test_loader:
            correct += (model(x).argmax(1) == y).sum().item()
    print(f"baseline: test accuracy after 1 epoch {100 * correct / len(test_set):.2f}%")


def whole_process(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Seconds `cmd` took from start to exit, and its stdout; a failed run ends the benchmark."""
    seconds, proc = timed(subprocess.run, cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return seconds, proc.stdout


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("MNIST_DATA"))
    p.add_argument("--repeats", type=int, default=1, help="runs of each, alternating")
    p.add_argument("--threads", type=int, help="torch threads in both (default: all cores)")
    p.add_argument("--baseline-child", metavar="ROOT", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.baseline_child:
        baseline_child(args.baseline_child, args.threads)
        return
    if not args.data_dir:
        sys.exit("error: give --data-dir or set MNIST_DATA to the folder with the IDX files")
    data_dir = Path(args.data_dir).resolve()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    threads = ["--threads", str(args.threads)] if args.threads else []
    with tempfile.TemporaryDirectory(prefix="bench-mnist-") as tmp:
        raw = Path(tmp) / "tv" / "MNIST" / "raw"
        raw.mkdir(parents=True)
        for gz in data_dir.glob("*-ubyte.gz"):
            with gzip.open(gz) as src, open(raw / gz.name.removesuffix(".gz"), "wb") as dst:
                shutil.copyfileobj(src, dst)
        ours_cmd = [
            sys.executable,
            "-m",
            "mnist.train",
            "--model",
            "seed",
            "--epochs",
            "1",
            "--data-dir",
            str(data_dir),
            "--out",
            str(Path(tmp) / "out"),
            "--no-progress",
            *threads,
        ]
        base_cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--baseline-child",
            str(Path(tmp) / "tv"),
            *threads,
        ]
        print(
            f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}"
        )
        ours_times, base_times = [], []
        for k in range(args.repeats):
            t, out = whole_process(base_cmd, env)
            base_times.append(t)
            print(f"run {k + 1} baseline pipeline: {t:6.1f}s  ({out.strip()})", flush=True)
            t, out = whole_process(ours_cmd, env)
            ours_times.append(t)
            final = [line for line in out.splitlines() if line.startswith("final")]
            print(
                f"run {k + 1} our pipeline:      {t:6.1f}s  ({final[-1] if final else ''})",
                flush=True,
            )
    base, ours = min(base_times), min(ours_times)
    print(
        f"--model seed, 1 epoch + test, whole process (best of {args.repeats}): "
        f"baseline {base:.1f}s, ours {ours:.1f}s, speed-up {base / ours:.2f}x"
    )


if __name__ == "__main__":
    main()
