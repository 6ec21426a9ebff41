"""Per-file report of the student-workbook oracle (scripts/student_oracle.py).

Usage: python scripts/student_analysis.py [/path/to/students] [--only 02] [--json out.json]
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import re
import sys

import numpy as np
from openpyxl.utils import column_index_from_string

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from student_oracle import (
    COMPUTED,
    QUANTITIES,
    Book,
    Table,
    find_tables,
    label_quantity,
    meaning_check,
    numpy_run,
)


def r1c1(book: Book, key) -> str:
    """Formula with references made relative to its own cell, to see a column's meaning change."""
    raw = book.raw.get(key)
    if not (isinstance(raw, str) and raw.startswith("=")):
        return "<value>" if raw is not None else "<empty>"
    m = re.match(r"([A-Z]+)(\d+)", key[1])
    c0, r0 = column_index_from_string(m.group(1)), int(m.group(2))

    def rep(mm):
        cabs, col, rabs, row = mm.group(1), mm.group(2), mm.group(3), mm.group(4)
        c = column_index_from_string(col)
        rr = int(row)
        cs = f"C{c}" if cabs else f"C[{c - c0}]"
        rs = f"R{rr}" if rabs else f"R[{rr - r0}]"
        return rs + cs

    return re.sub(r"(\$?)\b([A-Z]{1,3})(\$?)(\d+)\b", rep, raw.replace(" ", "")).upper()


def column_patterns(book: Book, t: Table) -> dict:
    """Per quantity: the runs of identical relative formulas down the column (if more than one)."""
    out = {}
    for q, c in t.cols.items():
        if q in ("t1", "t2", "i1", "i2"):
            continue
        runs = []
        start = t.first_row + (1 if q.startswith("w") else 0)
        for r in range(start, t.last_row + 1):
            p = r1c1(book, (t.sheet, f"{c}{r}"))
            if runs and runs[-1][1] == p:
                runs[-1][2] += 1
            else:
                runs.append([f"{c}{r}", p, 1])
        if len(runs) > 1:
            out[q] = runs
    return out


def inputs_constant(book: Book, t: Table) -> dict:
    out = {}
    for q in ("t1", "t2", "i1", "i2"):
        if q not in t.cols:
            continue
        v0 = book.value(t.key(q, t.first_row))
        for r in range(t.first_row + 1, t.last_row + 1):
            v = book.value(t.key(q, r))
            if v != v0:
                out[q] = f"{t.cols[q]}{r} = {v!r} while row {t.first_row} holds {v0!r}"
                break
    return out


def consistency(book: Book, t: Table) -> dict:
    """Evaluator vs cached values; typed constants in computed columns after the first row."""
    book.overrides, book.memo = {}, {}
    worst, worst_at, typed = 0.0, None, {}
    for q, c in t.cols.items():
        for r in range(t.first_row, t.last_row + 1):
            k = (t.sheet, f"{c}{r}")
            cv = book.cached.get(k)
            ev = book.value(k)
            if isinstance(cv, (int, float)) and isinstance(ev, (int, float)) and not math.isnan(ev):
                d = abs(cv - ev) / max(abs(cv), 1e-12)
                if d > worst:
                    worst, worst_at = d, k[1]
            if (
                q in COMPUTED
                and not book.is_formula(k)
                and not (q.startswith("w") and r == t.first_row)
            ):
                typed.setdefault(q, []).append(k[1])
    return {"cache_vs_eval_rel": worst, "worst_cell": worst_at, "typed": typed}


def effect(book: Book, t: Table, run: dict) -> dict:
    res = {}
    for q in t.cols:
        if q not in run:
            continue
        cv = np.array(
            [
                float(book.cached.get(t.key(q, r)))
                if isinstance(book.cached.get(t.key(q, r)), (int, float))
                else np.nan
                for r in range(t.first_row, t.last_row + 1)
            ]
        )
        ref = run[q]
        rel = np.abs(cv - ref) / np.maximum(np.abs(ref), 1e-12)
        res[q] = float(np.nanmax(rel)) if np.isfinite(rel).any() else float("nan")
    if "E_total" in t.cols:
        last = book.cached.get(t.key("E_total", t.last_row))
        res["E_total_last_file"] = last
        res["E_total_last_correct"] = float(run["E_total"][-1])
    return res


def analyse(path: str) -> dict:
    book = Book(path)
    out = {"file": os.path.basename(path), "sheets": book.sheets, "tables": []}
    for t in find_tables(book):
        info = {
            "sheet": t.sheet,
            "header_row": t.header_row,
            "first_col": min(t.cols.values(), key=column_index_from_string),
            "first_row": t.first_row,
            "rows": t.rows,
            "eta_cell": t.eta_cell,
            "eta_label": t.eta_label,
            "labels": t.labels,
            "cols": t.cols,
            "missing": [q for q in QUANTITIES if q not in t.cols],
            "unknown_labels": [
                v.strip() if isinstance(v, str) else v
                for (sh, coord), v in sorted(book.raw.items())
                if sh == t.sheet
                and re.fullmatch(rf"[A-Z]+{t.header_row}", coord)
                and isinstance(v, str)
                and label_quantity(v) is None
            ],
        }
        try:
            info["consistency"] = consistency(book, t)
            eta = None
            if t.eta_cell:
                m = re.match(r"(?:'(.+)'!)?([A-Z]+\d+)", t.eta_cell)
                eta = float(book.value((m.group(1) or t.sheet, m.group(2))))
            info["eta"] = eta
            mc = meaning_check(book, t)
            info["bad"], info["empty"] = mc["bad"], mc["empty"]
            info["patterns"] = column_patterns(book, t)
            info["inputs"] = inputs_constant(book, t)
            if eta is not None:
                info["effect"] = effect(book, t, numpy_run(book, t, eta))
                info["effect_vs_template"] = effect(
                    book, t, numpy_run(book, t, eta, template_bug=True)
                )
        except Exception as e:  # crude oracle: report, the TOML is written by hand
            info["error"] = f"{type(e).__name__}: {e}"
        out["tables"].append(info)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", nargs="?", default="/work/shared/data/students")
    ap.add_argument("--only", default="")
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    results = []
    for f in sorted(glob.glob(os.path.join(a.folder, "*.xlsx"))):
        if a.only and not os.path.basename(f).startswith(a.only):
            continue
        try:
            results.append(analyse(f))
        except Exception as e:
            results.append({"file": os.path.basename(f), "error": f"{type(e).__name__}: {e}"})
    for res in results:
        print("#####", res["file"], res.get("error", ""))
        for t in res.get("tables", []):
            print(
                f"  [{t['sheet']}] hdr {t['header_row']} col {t['first_col']} rows {t['rows']}"
                f" eta {t.get('eta')} @ {t['eta_cell']} ({t['eta_label']!r}) missing {t['missing']}"
            )
            if "error" in t:
                print("   ERROR", t["error"])
            c = t.get("consistency", {})
            print(
                f"   cache-vs-eval {c.get('cache_vs_eval_rel', 0):.2e} at {c.get('worst_cell')}"
                f" typed {c.get('typed')}"
            )
            for q, b in t.get("bad", {}).items():
                print(
                    f"   BAD {q} {b['cell']} seed={b['seed']} rel={b['rel']:.3g}"
                    f" nrows={b['n_rows']} visible={len(b['visible_rows'])} {b['formula']!r}"
                )
            if t.get("empty"):
                print("   EMPTY", {q: (v[0], len(v)) for q, v in t["empty"].items()})
            for q, runs in t.get("patterns", {}).items():
                print(f"   PATTERN {q}: " + " | ".join(f"{a} x{n}: {p}" for a, p, n in runs[:6]))
            if t.get("inputs"):
                print("   INPUTS", t["inputs"])
            e = t.get("effect", {})
            if e:
                worst = {
                    q: f"{v:.2e}"
                    for q, v in e.items()
                    if isinstance(v, float) and not q.startswith("E_total_last") and v > 1e-9
                }
                print(
                    f"   effect(max rel vs clean run) {worst}; E_total last file"
                    f" {e.get('E_total_last_file')} correct {e.get('E_total_last_correct')}"
                )
                et = t.get("effect_vs_template", {})
                wt = max(
                    (
                        v
                        for q, v in et.items()
                        if isinstance(v, float) and not q.startswith("E_total_last")
                    ),
                    default=0,
                )
                print(f"   max rel vs template-bug run {wt:.2e}")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(results, fh, indent=1, default=str, ensure_ascii=False)


if __name__ == "__main__":
    from student_oracle import run_deep

    run_deep(main)
