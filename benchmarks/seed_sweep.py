"""The default MNIST run over several seeds: run them, or summarise runs that are done.

    python benchmarks/seed_sweep.py --seeds 1 2 ... 20 --chosen 1 2 ... 10 --jobs 2
    python benchmarks/seed_sweep.py --summarise runs/seeds/s1 runs/seeds/s2 ... [--jobs 2]

One seed's accuracy says little about a recipe, so every recipe is judged over many (`--chosen`:
the seeds it was chosen on, against the others). Writes `--csv` (one row per seed × epoch) and
`--md` (accuracy per epoch and seed, with each run's command). A benchmark, not a test: nothing
here asserts anything. The data comes from MNIST_DATA or --data-dir, as for mnist.train.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backprop_xlsx.errors import BpxlError  # noqa: E402
from backprop_xlsx.xlsx.fileio import atomic_write_text  # noqa: E402

COLUMNS = ("seed", "epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds")
TARGET = 99.4
# The flags mnist.train takes from a run's config when they differ from the model's recipe.
FLAGS = (("epochs", "--epochs"), ("batch_size", "--batch-size"), ("lr", "--lr"))


def run_sweep(
    seeds: list[int],
    jobs: int,
    root: Path,
    extra: list[str],
    candidate: str | None,
    probe: bool = False,
) -> list[Path]:
    """Train every seed, `jobs` at a time, one thread each; return the run folders.

    Each is `python -m mnist.train --threads 1 --seed N --out ROOT/sN --no-progress` with its
    log in ROOT/sN.log; one thread each, so `jobs` = the number of cores."""
    root.mkdir(parents=True, exist_ok=True)
    head = ["benchmarks/candidates.py", candidate] if candidate else ["-m", "mnist.train"]
    head += ["--probe-averages"] * probe

    def one(seed: int) -> Path:
        out = root / f"s{seed}"
        cmd = [sys.executable, *head, "--threads", "1", "--seed", str(seed)]
        cmd += ["--out", str(out), "--no-progress", *extra]
        print(f"start seed {seed}: {' '.join(cmd[1:])}", flush=True)
        with open(root / f"s{seed}.log", "w", encoding="utf-8") as log:
            code = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
        print(f"done  seed {seed}: exit {code}, log {root / f's{seed}.log'}", flush=True)
        if code != 0:
            raise SystemExit(f"seed {seed} failed (exit {code}); see {root / f's{seed}.log'}")
        return out

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, seeds))


def read_run(folder: Path) -> dict:
    """A run folder's metrics, plus what its log says about threads and data."""
    path = folder / "mnist_metrics.json"
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"{path}: not a finished mnist.train run ({exc})") from exc
    metrics["folder"] = folder
    log = folder.parent / f"{folder.name}.log"
    text = log.read_text(encoding="utf-8", errors="replace") if log.is_file() else ""
    threads = re.search(r"\((\d+) threads?\)", text)
    metrics["threads"] = int(threads.group(1)) if threads else None
    metrics["log"] = log if text else None
    candidate = re.search(r"^candidate (\S+):", text, re.M)
    metrics["candidate"] = candidate.group(1) if candidate else None
    return metrics


def command_of(run: dict) -> str:
    """The mnist.train command line that gives this run's config (as far as the record says)."""
    from mnist.training import RECIPES

    config = run["config"]
    if run["candidate"]:
        cmd = ["python", "benchmarks/candidates.py", run["candidate"]]
    else:
        cmd = ["python", "-m", "mnist.train"]
    if run["threads"] is not None:
        cmd += ["--threads", str(run["threads"])]
    if config["model"] != "ours":
        cmd += ["--model", config["model"]]
    recipe = RECIPES[config["model"]]
    used = config["recipe"]
    cmd += [
        f
        for key, flag in FLAGS
        if used[key] != getattr(recipe, key)
        for f in (flag, f"{used[key]:g}" if key == "lr" else str(used[key]))
    ]
    if config.get("limit") is not None:
        cmd += ["--limit", str(config["limit"])]
    cmd += ["--seed", str(run["seed"]), "--out", str(run["folder"]), "--no-progress"]
    return " ".join(cmd)


def seeds_csv(runs: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for run in runs:
        for row in run["epochs"]:
            writer.writerow([run["seed"], *(row[c] for c in COLUMNS[1:])])
    return buf.getvalue()


def sweep_flags(config: dict, candidate: str | None = None) -> list[str]:
    """The seed_sweep.py flags that give a run's --model, --epochs and --limit (none for the
    defaults)."""
    from mnist.training import RECIPES

    flags = [] if config["model"] == "ours" else ["--model", config["model"]]
    if candidate:
        flags += ["--candidate", candidate]
    if config["recipe"]["epochs"] != RECIPES[config["model"]].epochs:
        flags += ["--epochs", str(config["recipe"]["epochs"])]
    if config.get("limit") is not None:
        flags += ["--limit", str(config["limit"])]
    return flags


def span(seeds: list[int]) -> str:
    """1 2 3 4 → '1–4'; anything else as a list."""
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}–{seeds[-1]}"
    return ", ".join(map(str, seeds))


def halves_md(runs: list[dict], chosen: list[int]) -> list[str]:
    """The seeds the recipe was chosen on against the others, which confirm it: min, mean, max,
    standard deviation and every seed's final accuracy, each half and all together."""
    groups = [
        ("chosen", [r for r in runs if r["seed"] in chosen]),
        ("confirmation", [r for r in runs if r["seed"] not in chosen]),
        ("all", runs),
    ]
    lines = [
        "| seeds | | ≥ 99.4 % | min | mean | max | std | final test accuracy per seed |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, group in groups:
        if not group:
            continue
        finals = [r["epochs"][-1]["test_acc"] for r in group]
        std = statistics.stdev(finals) if len(finals) > 1 else 0.0
        each = ", ".join(f"{r['seed']}: {f:.2f}" for r, f in zip(group, finals, strict=True))
        lines.append(
            f"| {span([r['seed'] for r in group])} | {name} | "
            f"{sum(f >= TARGET for f in finals)}/{len(finals)} | {min(finals):.2f} | "
            f"{statistics.mean(finals):.2f} | {max(finals):.2f} | {std:.3f} | {each} |"
        )
    return lines


def seeds_md(
    runs: list[dict],
    jobs: int | None,
    csv_link: str,
    chosen: list[int] | None = None,
    note: str | None = None,
) -> str:
    n = max(len(r["epochs"]) for r in runs)
    finals = [r["epochs"][-1]["test_acc"] for r in runs]
    first = next((r for r in runs if not r["candidate"]), runs[0])  # the default's, if any
    flags = sweep_flags(first["config"], first["candidate"])
    recipe = "the default recipe" if not flags else f"the recipe with {' '.join(flags)}"
    lines = [
        f"# MNIST over {len(runs)} seeds: test accuracy (%) per epoch",
        "",
        f"Model `{first['candidate'] or first['model']}` ({first['params']:,} parameters, "
        f"{first.get('multiply_adds', 0):,} multiply-adds per image), {recipe} "
        f"({first['config']['recipe']['epochs']} epochs), on {first['device']}. "
        f"Final test accuracy: mean {statistics.mean(finals):.2f}%, "
        f"min {min(finals):.2f}%, max {max(finals):.2f}%; "
        f"{sum(f >= TARGET for f in finals)} of {len(finals)} seeds ≥ {TARGET}%.",
        "",
    ]
    if note:
        lines += [note, ""]
    if chosen:
        lines += [
            f"The recipe was chosen on seeds {span(chosen)} and then run unchanged on the "
            "others, which confirm it or not:",
            "",
            *halves_md(runs, chosen),
            "",
        ]
    lines += [
        "| epoch | " + " | ".join(f"seed {r['seed']}" for r in runs) + " | mean |",
        "| ---: |" + " ---: |" * (len(runs) + 1),
    ]
    for e in range(n):
        accs = [r["epochs"][e]["test_acc"] if e < len(r["epochs"]) else None for r in runs]
        cells = [f"{a:.2f}" if a is not None else "" for a in accs]
        mean = statistics.mean(a for a in accs if a is not None)
        cells.append(f"{mean:.2f}")
        if e == n - 1:
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append(
            f"| {'**' + str(e + 1) + '**' if e == n - 1 else e + 1} | " + " | ".join(cells) + " |"
        )
    seconds = [sum(row["seconds"] for row in r["epochs"]) for r in runs]
    lines += [
        "",
        "Every number is an exact share of the 10,000 test digits "
        f"({finals[0]:.2f} = {round(finals[0] * 100):,} right). "
        "Per-epoch numbers for every seed, train loss and accuracy included: "
        f"[`{Path(csv_link).name}`]({csv_link}).",
        "",
        "## The runs",
        "",
    ]
    how = "one thread each" if all(r["threads"] == 1 for r in runs) else "threads as below"
    if jobs is not None:
        how += f", {jobs} at a time"
    lines += [
        f"Each run is one process ({how}); its time is the sum of its epochs' seconds (training "
        "and test pass). A seed gives the same numbers again with the same thread count; another "
        "thread count sums floats in another order, which changes the last digits.",
        "",
        "| seed | final test acc | time | command |",
        "| ---: | ---: | ---: | --- |",
    ]
    for r, final, secs in zip(runs, finals, seconds, strict=True):
        lines.append(f"| {r['seed']} | {final:.2f} | {secs:.0f} s | `{command_of(r)}` |")
    seeds = " ".join(str(r["seed"]) for r in runs)
    if chosen:
        flags = [*flags, "--chosen", *map(str, chosen)]
    minutes = round(statistics.mean(seconds) / 60)
    lines += [
        "",
        f"To reproduce the table (about {minutes} minute{'s' * (minutes != 1)} per seed and "
        "core on this machine):",
        "",
        "```bash",
        f"MNIST_DATA=… python benchmarks/seed_sweep.py --seeds {seeds} --jobs {jobs or 2} "
        + " ".join([*flags, "--out-root", "runs/seeds"]),
        "```",
        "",
    ]
    return "\n".join(lines)


def summarise(
    folders: list[Path],
    csv_path: Path,
    md_path: Path,
    jobs: int | None,
    chosen: list[int] | None = None,
    note: str | None = None,
) -> None:
    """Read each folder's mnist_metrics.json (and FOLDER.log for the thread count, if any) and
    write the CSV (one row per seed × epoch) and the Markdown: accuracy per epoch (rows) and
    seed (columns), the final epoch in bold; with `chosen`, first the chosen seeds against the
    others (min, mean, max, spread, every seed)."""
    runs = sorted((read_run(f) for f in folders), key=lambda r: r["seed"])
    if len({r["seed"] for r in runs}) != len(runs):
        raise SystemExit("two folders hold the same seed")
    atomic_write_text(csv_path, seeds_csv(runs))
    csv_link = os.path.relpath(csv_path.resolve(), md_path.resolve().parent)
    atomic_write_text(md_path, seeds_md(runs, jobs, Path(csv_link).as_posix(), chosen, note))
    finals = ", ".join(f"seed {r['seed']} {r['epochs'][-1]['test_acc']:.2f}%" for r in runs)
    print(f"wrote {csv_path} and {md_path}: {finals}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python benchmarks/seed_sweep.py", description=__doc__.split("\n")[0]
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--seeds", type=int, nargs="+", help="run these seeds, then summarise")
    what.add_argument("--summarise", type=Path, nargs="+", metavar="DIR", help="finished runs")
    p.add_argument("--jobs", type=int, help="runs at a time (default 2 for --seeds)")
    p.add_argument(
        "--chosen",
        type=int,
        nargs="+",
        metavar="SEED",
        help="the seeds the recipe was chosen on: the table sets them against the others",
    )
    p.add_argument("--out-root", type=Path, default=Path("runs/seeds"), help="for --seeds")
    p.add_argument("--note", help="a paragraph for the table, under its first line")
    p.add_argument("--data-dir", help="passed to mnist.train (default: $MNIST_DATA)")
    p.add_argument("--model", help="passed to mnist.train (default: ours)")
    p.add_argument("--candidate", help="train this net of benchmarks/candidates.py instead")
    p.add_argument(
        "--probe-averages",
        action="store_true",
        help="with --candidate: also print the accuracy of the weights averaged over the last "
        "epochs (changes nothing in the runs)",
    )
    p.add_argument("--epochs", type=int, help="passed to mnist.train (default: the recipe's)")
    p.add_argument("--limit", type=int, help="passed to mnist.train: a quick smoke sweep")
    p.add_argument("--csv", type=Path, default=ROOT / "outputs" / "mnist_seeds.csv")
    p.add_argument("--md", type=Path, default=ROOT / "outputs" / "mnist_seeds.md")
    args = p.parse_args(argv)
    if args.seeds is not None:
        jobs = args.jobs or 2
        if jobs < 1:
            p.error("--jobs must be at least 1")
        if args.data_dir is None and not os.environ.get("MNIST_DATA"):
            print("note: neither --data-dir nor MNIST_DATA is set; mnist.train looks in ./data")
        extra = [
            part
            for flag, value in (
                ("--data-dir", args.data_dir),
                ("--model", args.model),
                ("--epochs", args.epochs),
                ("--limit", args.limit),
            )
            if value is not None
            for part in (flag, str(value))
        ]
        if args.probe_averages and not args.candidate:
            p.error("--probe-averages needs --candidate")
        folders = run_sweep(
            args.seeds, jobs, args.out_root.resolve(), extra, args.candidate, args.probe_averages
        )
        summarise(folders, args.csv, args.md, jobs, args.chosen, args.note)
    else:
        summarise(args.summarise, args.csv, args.md, args.jobs, args.chosen, args.note)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BpxlError as exc:
        sys.exit(f"error: {exc}")
