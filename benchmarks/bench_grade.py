"""Time `bpxl verify` grading a class of hand-made workbooks, and its peak memory.

    python benchmarks/bench_grade.py [--students DIR] [--class-size 1000] [--workers 2]

Two runs, each `python -m backprop_xlsx verify FOLDER --workers N` as a teacher runs it:
the course's 25 student workbooks (STUDENTS_DATA, default ../shared/data/students beside the
clone), then a class of --class-size copies of them in a temporary folder. Peak memory is the
process tree's: every 0.1 s the VmHWM of the command and of each worker it has started is read
from /proc and summed over the processes alive; the largest sum is reported (workers are
replaced as they go, so a sum over all of them ever would count the same memory twice).
Targets: 25 files ≤ 20 s on 2 cores; 1,000 files ≤ 10 min and ≤ 500 MB.
A script, not a timed test: the numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _kib(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _tree(pid: int) -> list[int]:
    """pid and all its descendants, from /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def run(folder: Path, workers: int, csv_out: Path) -> dict:
    cmd = [sys.executable, "-m", "backprop_xlsx", "verify", str(folder), "--workers",
           str(workers), "--csv", str(csv_out)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # The output goes to files, not pipes: a class's summary is longer than a pipe holds, and
    # the command would wait for a reader that waits for it to end.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, sum(_kib(p, "VmHWM:") for p in _tree(proc.pid)))
            time.sleep(0.1)
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        text, errors = out.read().decode().strip(), err.read().decode().strip()
    last = text.splitlines()[-1] if text else errors
    return {"seconds": seconds, "peak_mb": peak / 1024, "exit": proc.returncode, "last": last}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("STUDENTS_DATA") or str(ROOT.parent / "shared" / "data" / "students")
    parser.add_argument("--students", type=Path, default=Path(default))
    parser.add_argument("--class-size", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    files = sorted(args.students.glob("*.xlsx"))
    if not files:
        sys.exit(f"error: no .xlsx files in {args.students}")
    print(f"cpus {os.cpu_count()}, workers {args.workers}, load {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        r = run(args.students, args.workers, Path(tmp) / "students.csv")
        print(f"{len(files)} student files: {r['seconds']:.1f} s, peak {r['peak_mb']:.0f} MB "
              f"(tree), exit {r['exit']}: {r['last']}")  # fmt: skip
        folder = Path(tmp) / "class"
        folder.mkdir()
        for k in range(args.class_size):
            src = files[k % len(files)]
            shutil.copyfile(src, folder / f"{k:04d}_{src.name}")
        r = run(folder, args.workers, Path(tmp) / "class.csv")
        print(f"class of {args.class_size} files: {r['seconds']:.1f} s "
              f"({r['seconds'] / args.class_size * 1000:.0f} ms/file), peak {r['peak_mb']:.0f} MB "
              f"(tree), exit {r['exit']}: {r['last']}")  # fmt: skip


if __name__ == "__main__":
    main()
