"""LibreOffice as the witness of the oracle's evaluator under random leaves.

The oracle's meaning check replaces every typed leaf of a table by a random value and
re-evaluates the formulas with its own evaluator. This script writes the same replacement into a
copy of the workbook (in a temporary folder), lets LibreOffice recalculate it, and compares every
table cell: a match shows the evaluator gives the formulas the meaning a spreadsheet gives them.

Usage: python scripts/student_lo_witness.py [/path/to/students] [--only 01]
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import random
import sys
import tempfile
import warnings
from pathlib import Path

import openpyxl

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import student_oracle as so

from backprop_xlsx.xlsx.libreoffice import recalculate

warnings.filterwarnings("ignore")


def witness(path: str, seed: int, tmp: Path) -> str:
    book = so.Book(path)
    tables = [t for t in so.find_tables(book) if t.rows > 0]
    if not tables:
        return "no table"
    keys = [t.key(q, r) for t in tables for q in t.cols for r in range(t.first_row, t.last_row + 1)]
    leaves = sorted(book.leaves(keys))
    rnd = random.Random(seed)
    book.overrides, book.memo = {}, {}
    base = {k: float(book.value(k)) for k in leaves}
    for k in leaves:
        v = base[k]
        book.overrides[k] = v + rnd.uniform(-0.4, 0.4) * max(abs(v), 0.1)
    book.memo = {}
    wb = openpyxl.load_workbook(path)
    for (sheet, coord), v in book.overrides.items():
        wb[sheet][coord].value = v
    src = tmp / "perturbed.xlsx"
    dst = tmp / "recalculated.xlsx"
    wb.save(src)
    recalculate(src, dst, timeout=300)
    lo = openpyxl.load_workbook(dst, data_only=True)
    worst, at, n, moved = 0.0, None, 0, 0
    for k in keys:
        if not book.is_formula(k):
            continue
        mine = book.value(k)
        theirs = lo[k[0]][k[1]].value
        if not isinstance(theirs, (int, float)) or not isinstance(mine, (int, float)):
            continue
        if math.isnan(mine):
            continue
        n += 1
        cached = book.cached.get(k)
        moved += isinstance(cached, (int, float)) and abs(cached - theirs) > 1e-9 * abs(cached)
        d = abs(mine - theirs) / max(abs(theirs), 1e-12)
        if abs(mine - theirs) > 1e-13 and d > worst:
            worst, at = d, f"{k[0]}!{k[1]}"
    return (
        f"{n} formula cells ({moved} moved off their cached value), worst rel {worst:.1e} at {at}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", nargs="?", default="/work/shared/data/students")
    ap.add_argument("--only", default="")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    for f in sorted(glob.glob(os.path.join(a.folder, "*.xlsx"))):
        name = os.path.basename(f)
        if a.only and not name.startswith(a.only):
            continue
        with tempfile.TemporaryDirectory() as d:
            try:
                print(name, witness(f, a.seed, Path(d)), flush=True)
            except Exception as e:  # a witness run, not a product: report and go on
                print(name, f"error: {type(e).__name__}: {e}", flush=True)


if __name__ == "__main__":
    so.run_deep(main)
