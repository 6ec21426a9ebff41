"""What the grader prints: one workbook as a grader's notes, or a class as one summary table.

A class is checked in parallel by worker processes, each file in its own task and the workers
renewed after a few dozen files each, so memory stays bounded by the largest single file, however
many files there are; a file that cannot be read becomes a row saying why, never a stopped run.
"""

from __future__ import annotations

import csv
import io
import multiprocessing
import multiprocessing.context
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from ..errors import BpxlError
from ..xlsx.read import Package
from .grade import grade_package
from .tables import QUANTITIES

TASKS_PER_WORKER = 25  # a worker is replaced after this many files: no growth over a class
EXIT = {"correct": 0, "wrong": 1, "cannot_check": 2}


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.10g}"


def text(grade: dict) -> str:
    """A workbook's grade as lines a student or a teacher reads."""
    name = Path(grade["path"]).name
    lines = []
    for t in grade["tables"]:
        renamed = ", ".join(
            f"{label.strip()!r} = {q}" for q, label in t["labels"].items() if label.strip() != q
        )
        eta = f"η = {t['eta']:g} ({t['eta_cell']}" if t["eta"] is not None else "η not found ("
        eta += f" {t['eta_label'].strip()!r})" if t["eta_label"].strip() else ")"
        line = f"table {t['sheet']}!{t['first_col']}{t['header_row']}: {t['rows']} rows, {eta}"
        if renamed:
            line += f"; labels {renamed}"
        if t["unknown_labels"]:
            line += f"; ignored {', '.join(repr(u) for u in t['unknown_labels'])}"
        if t["unchecked"]:
            line += f"; not checked: {t['unchecked']}"
        lines.append(line)
    for f in grade["findings"]:
        line = f"  {f['quantity']}  {f['sheet']}!{f['first_cell']}"
        if f["rows_affected"] > 1:
            line += f" ({f['rows_affected']} rows)"
        line += f": {f['message']}"
        if f["kind"] in ("formula", "typed", "value", "empty", "repeated_rows"):
            line += f"\n      found {_fmt(f['found'])}, expected {_fmt(f['expected'])}"
            if f["kind"] == "formula" and f["found"] == f["expected"] is not None:
                line += " (the file's own numbers hide it)"
            if f["found_formula"]:
                line += f"; formula {f['found_formula']}"
            if f["should_read"]:
                line += f", should read {f['should_read']}"
        lines.append(line)
    verdict = grade["verdict"]
    if verdict == "cannot_check":
        lines.append(f"{name}: cannot be checked: {grade['reason']}")
    elif verdict == "wrong":
        quantities = _wrong(grade)
        plural = "ies" if len(quantities) != 1 else "y"
        lines.append(
            f"{name}: WRONG: {len(quantities)} wrong quantit{plural}"
            f" ({', '.join(quantities)}) in {len(grade['tables'])} table"
            f"{'s' * (len(grade['tables']) != 1)}"
        )
    else:
        rows = sum(t["rows"] for t in grade["tables"])
        lines.append(
            f"{name}: correct: every formula and value of {len(grade['tables'])} table"
            f"{'s' * (len(grade['tables']) != 1)} ({rows:,} rows) checked"
        )
    return "\n".join(lines)


def _wrong(grade: dict) -> list[str]:
    found = {f["quantity"] for f in grade["findings"]}
    return [q for q in QUANTITIES if q in found]


def is_bpxl_package(pkg: Package) -> bool:
    """Whether an open workbook is one bpxl wrote (its LR or trained-net sheets and Setup), for
    today's verifier; anything else is graded as a hand-made workbook."""
    from ..cnn import layout as cnn_layout
    from ..mlp import layout

    titles = list(pkg.parts)
    lr = any(layout.training_sheet(t) is not None for t in titles)  # LR 0.1, Adam 0.05, …
    setup = any(t.casefold() == layout.SETUP_SHEET.casefold() for t in titles)
    return (lr and setup) or any(t in titles for t in cnn_layout.SHEETS)


def grade_open(pkg: Package, path: str) -> dict:
    """A hand-made workbook already open, as a grade dict; never raises."""
    try:
        return grade_package(pkg, path).to_dict()
    except BpxlError as exc:
        return _unreadable(path, str(exc))
    except RecursionError:
        return _unreadable(path, "internal error: formulas nested too deeply")
    except Exception as exc:  # a bug in bpxl: still a grade, never a traceback
        return _unreadable(path, f"internal error: {type(exc).__name__}: {exc}")


def check_file(path: str) -> dict:
    """One file of a class, as a grade dict; never raises (a worker must not die). The file is
    opened once: its sheet titles say which checker it needs, and that checker reads it."""
    try:
        pkg = Package(Path(path))
        try:
            if not is_bpxl_package(pkg):
                return grade_open(pkg, path)
            from ..verify.workbook import verify_package

            report = verify_package(pkg)
        finally:
            pkg.close()
        data = report.to_dict()
        return {
            "path": path,
            "verdict": "correct" if report.ok else "wrong",
            "reason": "",
            "tables": [],
            "findings": [],
            "bpxl": data,
        }
    except BpxlError as exc:
        return _unreadable(path, str(exc))
    except RecursionError:
        return _unreadable(path, "internal error: formulas nested too deeply")
    except Exception as exc:  # a bug in bpxl: the rest of the class still gets graded
        return _unreadable(path, f"internal error: {type(exc).__name__}: {exc}")


def _unreadable(path: str, reason: str) -> dict:
    return {
        "path": path, "ok": False, "verdict": "cannot_check",
        "reason": " ".join(reason.split()), "tables": [], "findings": [],
    }  # fmt: skip


def class_files(paths: Iterable[Path]) -> list[Path]:
    """The .xlsx files named, folders expanded (sorted, not recursive)."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files.extend(
                sorted(f for f in p.iterdir() if f.suffix.lower() == ".xlsx" and f.is_file())
            )
        else:
            files.append(p)
    return files


def grade_class(files: list[Path], workers: int | None = None) -> Iterator[dict]:
    """Grades of the files, in order, computed by worker processes.

    The workers are renewed every TASKS_PER_WORKER files each (a fresh pool per batch), so no
    worker grows over a class; a worker that dies on a file (killed, out of memory) breaks only
    its batch, whose unfinished files are then checked one by one in fresh processes, and the
    file it dies on again becomes a row saying so.
    """
    names = [str(f) for f in files]
    workers = max(1, min(workers or os.cpu_count() or 1, len(names)))
    if workers == 1:
        yield from map(check_file, names)
        return
    ctx = multiprocessing.get_context("spawn" if os.name == "nt" else "forkserver")
    step = workers * TASKS_PER_WORKER
    for start in range(0, len(names), step):
        batch = names[start : start + step]
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            futures = [pool.submit(check_file, name) for name in batch]
            for name, future in zip(batch, futures, strict=True):
                try:
                    yield future.result()
                except BrokenProcessPool:
                    yield _alone(name, ctx)


def _alone(name: str, ctx: multiprocessing.context.BaseContext) -> dict:
    """One file in a process of its own, after a worker died in its batch."""
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:
        try:
            return pool.submit(check_file, name).result()
        except BrokenProcessPool:
            return _unreadable(name, "the process checking this file died (out of memory?)")


def summary_row(grade: dict) -> dict:
    return {
        "file": Path(grade["path"]).name,
        "path": grade["path"],
        "verdict": grade["verdict"],
        "tables": len(grade["tables"]),
        "rows": sum(t["rows"] for t in grade["tables"]),
        "wrong_quantities": _wrong(grade),
        "findings": len(grade["findings"]),
        "reason": grade["reason"],
    }


def summary_text(rows: list[dict]) -> str:
    """One line per file: file, tables, verdict, wrong quantities; then the counts."""
    width = max([len("file"), *(len(r["file"]) for r in rows)])
    out = [f"{'file':<{width}}  tables  verdict        wrong quantities"]
    for r in rows:
        detail = ", ".join(r["wrong_quantities"]) if r["verdict"] == "wrong" else r["reason"]
        verdict = r["verdict"].replace("_", " ")
        out.append(f"{r['file']:<{width}}  {r['tables']:>6}  {verdict:<13}  {detail}")
    counts = {v: sum(r["verdict"] == v for r in rows) for v in EXIT}
    out.append(
        f"{len(rows)} files: {counts['correct']} correct, {counts['wrong']} wrong, "
        f"{counts['cannot_check']} cannot be checked"
    )
    return "\n".join(out)


CSV_FIELDS = ("file", "verdict", "tables", "rows", "findings", "wrong_quantities", "reason", "path")


def summary_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({**{k: r[k] for k in CSV_FIELDS}, "wrong_quantities": " ".join(
            r["wrong_quantities"])})  # fmt: skip
    return buf.getvalue()


def class_exit(rows: list[dict]) -> int:
    """The worst verdict: 2 if a file cannot be checked, else 1 if one is wrong, else 0."""
    return max((EXIT[r["verdict"]] for r in rows), default=0)
