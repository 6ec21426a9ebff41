"""Write tests/data/students_expected.toml from the oracle's findings and a hand-read layer.

The oracle (student_oracle.py) finds every cell whose meaning differs from the textbook formula;
what each wrong formula means in words, the verdicts of files that are not the assignment, and the
notes were established by reading the formulas by hand and live in MANUAL below.

Usage: python scripts/student_expected.py [/path/to/students] [-o tests/data/students_expected.toml]
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import student_analysis as sa
import student_oracle as so

SPEC = {
    "h1": "{w1}*{i1}+{w2}*{i2}",
    "h2": "{w3}*{i1}+{w4}*{i2}",
    "a_h1": "1/(1+EXP(-{h1}))",
    "a_h2": "1/(1+EXP(-{h2}))",
    "o1": "{w5}*{a_h1}+{w6}*{a_h2}",
    "o2": "{w7}*{a_h1}+{w8}*{a_h2}",
    "a_o1": "1/(1+EXP(-{o1}))",
    "a_o2": "1/(1+EXP(-{o2}))",
    "E1": "1/2*({t1}-{a_o1})^2",
    "E2": "1/2*({t2}-{a_o2})^2",
    "E_total": "{E1}+{E2}",
    "∂E/∂w5": "({a_o1}-{t1})*{a_o1}*(1-{a_o1})*{a_h1}",
    "∂E/∂w6": "({a_o1}-{t1})*{a_o1}*(1-{a_o1})*{a_h2}",
    "∂E/∂w7": "({a_o2}-{t2})*{a_o2}*(1-{a_o2})*{a_h1}",
    "∂E/∂w8": "({a_o2}-{t2})*{a_o2}*(1-{a_o2})*{a_h2}",
}
_D1 = "({a_o1}-{t1})*{a_o1}*(1-{a_o1})"
_D2 = "({a_o2}-{t2})*{a_o2}*(1-{a_o2})"
SPEC["∂E/∂w1"] = f"({_D1}*{{w5}}+{_D2}*{{w7}})*{{a_h1}}*(1-{{a_h1}})*{{i1}}"
SPEC["∂E/∂w2"] = f"({_D1}*{{w5}}+{_D2}*{{w7}})*{{a_h1}}*(1-{{a_h1}})*{{i2}}"
SPEC["∂E/∂w3"] = f"({_D1}*{{w6}}+{_D2}*{{w8}})*{{a_h2}}*(1-{{a_h2}})*{{i1}}"
SPEC["∂E/∂w4"] = f"({_D1}*{{w6}}+{_D2}*{{w8}})*{{a_h2}}*(1-{{a_h2}})*{{i2}}"

_TEMPLATE = "uses a_h1·(1 − a_h1) where a_h2·(1 − a_h2) belongs (the course template's bug)"
TEMPLATE = {"∂E/∂w3": f"∂E/∂w3 {_TEMPLATE}", "∂E/∂w4": f"∂E/∂w4 {_TEMPLATE}"}

# Hand-read meaning of the other wrong formulas, keyed by (file prefix, sheet, quantity).
MEANING = {
    ("01", "Sheet2", "E1"): "E1 reads t2 (column B) where t1 (column A) belongs: ½(t2 − a_o1)²",
    ("03", "Self", "∂E/∂w1"): "missing brackets: a_h1·(1 − a_h1)·i1 multiplies only the w7 term, "
    "the w5 term is added bare",
    ("03", "Self", "∂E/∂w2"): "missing brackets: a_h1·(1 − a_h1)·i2 multiplies only the w7 term",
    ("03", "Self", "∂E/∂w3"): "missing brackets: a_h2·(1 − a_h2)·i1 multiplies only the w8 term",
    ("03", "Self", "∂E/∂w4"): "missing brackets: a_h2·(1 − a_h2)·i2 multiplies only the w8 term",
    ("06", "Sheet2", "∂E/∂w7"): "uses a_o1 where a_o2 belongs: (a_o1 − t2)·a_o1·(1 − a_o1)·a_h1",
    ("06", "Sheet2", "∂E/∂w8"): "uses a_o1 where a_o2 belongs: (a_o1 − t2)·a_o1·(1 − a_o1)·a_h2",
    (
        "14",
        "assignment6-calculations",
        "w3",
    ): "from G24 down the update reads $G<row−3> (an old w3, "
    "about 0.25) where η ($G$19) belongs: '$G21' has a relative row, G22 and G23 were typed right",
    ("22", "Sheet1", "∂E/∂w1"): "uses w6 (N) where w7 (O) belongs in the a_o2 term",
    ("22", "Sheet1", "∂E/∂w2"): "uses w6 (N) where w7 (O) belongs in the a_o2 term",
    ("22", "Sheet1", "∂E/∂w3"): "uses w7 (O) where w6 (N) belongs in the a_o1 term",
    ("22", "Sheet1", "∂E/∂w4"): "uses w7 (O) where w6 (N) belongs in the a_o1 term",
}
_R18 = "rows 35, 39, 43, 49, 55, 61"
for _sheet in ("LR_0.1", "LR_0.2", "LR_0.5", "LR_0.8", "LR_1", "LR_2"):
    for _k in (1, 2, 3, 4):
        MEANING[("18", _sheet, f"∂E/∂w{_k}")] = (
            "(a_o1·t1) and (a_o2·t1) products where (a_o1 − t1) and (a_o2 − t2) belong"
        )
    MEANING[("18", _sheet, "∂E/∂w4")] += (
        f"; in {_R18} it also multiplies by i1 (C) where i2 (D) belongs"
    )
    MEANING[("18", _sheet, "∂E/∂w7")] = (
        "rows 34, 35, 38, 39, 42, 43, 46, 48, 49, 52, 54, 55, 58, 60, 61, 65 use "
        "(a_o1 − t1)·a_o1·(1 − a_o1) where (a_o2 − t2)·a_o2·(1 − a_o2) belongs"
    )
    _eta = (
        "η is a relative reference: E33:E35 read B29 (η), from row 36 on "
        "B32, B33, B33, B33, B36, … "
        "(the t2 = 0.99 cells of column B) where $B$29 belongs"
    )
    MEANING[("18", _sheet, "w3")] = (
        f"{_R18} hold '= F<r−1> − η·Y<r−1>' (w2's update) where w3's belongs; also: {_eta}"
    )
    MEANING[("18", _sheet, "w4")] = (
        f"{_R18} hold '= F<r−1> − η·Y<r−1>' (w2's update) where w4's belongs; also: {_eta}"
    )
    MEANING[("18", _sheet, "h1")] = (
        f"{_R18} hold '= F<r−1> − η·Y<r−1>' (a weight update) where w1·i1 + w2·i2 belongs"
    )
    MEANING[("18", _sheet, "E2")] = (
        f"{_R18} hold ½(t1 − a_o1)², a copy of E1, where ½(t2 − a_o2)² belongs"
    )
    for _w in ("w1", "w2", "w5", "w6", "w7", "w8"):
        MEANING[("18", _sheet, _w)] = _eta

MANUAL: dict[str, dict] = {
    "01": {
        "notes": "Only E1 is wrong: it reads t2 where t1 belongs; t1 = t2 = 0.5 in every row, so "
        "every cached value equals the correct run (checked to 1e-15): only the formula or a "
        "recomputation with t1 ≠ t2 (random leaves) shows it."
    },
    "03": {
        "notes": "Sheet 'Rohan' is the course template with its ∂E/∂w3, ∂E/∂w4 bug; sheet 'Self' "
        "has correct ∂E/∂w3/∂E/∂w4 derivatives but drops the brackets of all four hidden-layer "
        "gradients, a visible error (E_total off by 7 % at the last row)."
    },
    "07": {
        "notes": "The table starts from w4 = 0.5 (not 0.3). Sheet 'variance_accross_learning_rate' "
        "holds typed E_total curves for η = 0.1…2; they equal a NumPy run with the template "
        "bug to 1e-10 (not graded: not a training table)."
    },
    "08": {
        "notes": "t1, t2, i1, i2 are formulas holding constants ('=0.5', '=0.05') in every row; "
        "the oracle treats such formulas as typed leaves and varies them too."
    },
    "09": {
        "notes": "Extra columns AH:AM ('E_0.1' … 'E_2') hold typed E_total curves for six η; they "
        "equal a correct NumPy run to 1e-13. Only the η = 2 run is a formula table."
    },
    "10": {
        "notes": "Variant starting values: negative weights (w3 = −0.2, w6 = −0.6, w8 = −0.9) "
        "and targets 0.01/0.99; six sheets, one per η; 'Summary' sheet has no table."
    },
    "12": {"notes": "Variant inputs i1 = 1, i2 = 5; extra leading 'No' column."},
    "13": {
        "verdict": "cannot_check",
        "reason": "the table (Sheet1, header row 32) holds only the starting values B33:Q33; no "
        "computed column has a formula or a value, and the side notes (M4:O14, F43:L61) describe "
        "a ReLU variant with typed numbers, not this sigmoid assignment",
        "notes": "Nothing to grade: exit 2 'cannot be checked'.",
    },
    "14": {
        "notes": "Both sheets carry the template bug; 'assignment6-calculations' also has the "
        "w3 update reading an old w3 instead of η from G24 on (a formula whose meaning "
        "changes down the column)."
    },
    "17": {
        "notes": "Only 'L.R. 0.1' has formulas (template bug). The other five sheets are typed "
        "values (6-9 significant digits): the first rows equal the template computation "
        "(Z = 0.000224872, correct 0.000224813), and the last 6-7 rows of each repeat the row "
        "above exactly, so training stops there (E_total at the last row off by 7-23 %)."
    },
    "18": {
        "notes": "Six sheets, one per η, same block of 4 rows copied down, so the errors repeat "
        "every 4 rows. Cached values are Google-Sheets rounded (evaluator vs cache 5e-10). "
        "B47 holds 0.989999999999999 where t2 = 0.99 (harmless, 1e-15)."
    },
    "22": {
        "notes": "η = 10. The hidden-layer gradients read the wrong output weights; "
        "E_total at the last row is 15 % off."
    },
    "23": {
        "notes": "Other column order: w1..w8 first (E..L), then h1, out_h1, h2, out_h2, o1, "
        "out_o1, o2, out_o2. 'Copy of Sheet1' is a one-pass vertical layout, no table."
    },
    "24": {
        "verdict": "wrong",
        "notes": "Unfinished: one iteration (row 41) plus the updated weights in row 42 "
        "(H42:K42, P42:S42 = w − η·∂E/∂w with η at $J$39, labelled 'h' in I39, correct); row 42 "
        "has no forward pass and no gradients. Every formula present is correct. Targets "
        "0.01/0.99; the w3 gradient is labelled 'Edw3' while its neighbours say 'E∂w…'.",
        "extra_findings": [
            {
                "sheet": "Sheet1",
                "quantity": "h1",
                "kind": "unfinished_table",
                "meaning": "row 42 has the updated weights but no h1 … ∂E/∂w8; no further rows",
                "first_cell": "L42",
                "found_formula": "",
                "should_read": "=H42*F42+I42*G42, and every computed column continued down",
                "effect": "only 1 iteration: no training curve at all",
            }
        ],
    },
    "25": {
        "verdict": "cannot_check",
        "reason": "not this assignment: a 2-2-1 network with biases (b rows 8-9), one output, "
        "a single row driven by a macro loop (Korean Hancom workbook), no iteration table",
        "notes": "openpyxl's normal mode fails on an out-of-range style index; "
        "read-only mode reads it.",
    },
}


def fmt_spec(t: so.Table, q: str, r: int, eta_cell: str | None) -> str:
    if q.startswith("w"):
        e = eta_cell or "η"
        if "!" not in e:
            e = re.sub(r"([A-Z]+)(\d+)", r"$\1$\2", e)
        return f"={t.cols[q]}{r - 1}-{e}*{t.cols['∂E/∂' + q]}{r - 1}"
    return "=" + SPEC[q].format(**{k: f"{c}{r}" for k, c in t.cols.items()})


def effect_text(b: dict, n: int, eff: dict) -> str:
    parts = []
    if b["visible_rows"]:
        parts.append(
            f"first cell {b['have']:.9g} where {b['want']:.9g} belongs (rel {b['rel']:.2g})"
        )
    else:
        parts.append(
            "no value shows it with the file's numbers; with random inputs the cell is off"
            f" by rel {b['rel']:.2g}"
        )
    parts.append(f"{b['n_rows']} of {n} rows")
    ef, ec = eff.get("E_total_last_file"), eff.get("E_total_last_correct")
    if isinstance(ef, (int, float)) and isinstance(ec, (int, float)) and ec:
        parts.append(
            f"E_total at the last row {ef:.6g} vs correct {ec:.6g}"
            f" (rel {abs(ef - ec) / abs(ec):.2g})"
        )
    return "; ".join(parts)


def build(folder: str) -> dict:
    out = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.xlsx"))):
        name = os.path.basename(path)
        pre = name[:2]
        man = MANUAL.get(pre, {})
        res = sa.analyse(path)
        book = so.Book(path)
        tables, findings, unknown = [], [], []
        for info, t in zip(res["tables"], so.find_tables(book), strict=True):
            unknown += [u for u in info["unknown_labels"] if u not in unknown]
            labels = dict(info["labels"])  # raw: a matcher meets the trailing spaces too
            tables.append(
                {
                    "sheet": t.sheet,
                    "header_row": t.header_row,
                    "first_col": info["first_col"],
                    "first_row": t.first_row,
                    "rows": t.rows,
                    "eta": info.get("eta"),
                    "eta_cell": t.eta_cell or "",
                    "eta_label": t.eta_label or "",
                    "labels": labels,
                    "cached_vs_evaluator": info.get("consistency", {}).get(
                        "cache_vs_eval_rel", 0.0
                    ),
                }
            )
            typed_table = bool(info.get("consistency", {}).get("typed")) and not any(
                book.is_formula(t.key(q, t.first_row)) for q in t.cols
            )
            eff = info.get("effect", {})
            if typed_table:
                findings.extend(typed_findings(book, t, info))
                continue
            for q, b in info.get("bad", {}).items():
                meaning = MEANING.get((pre, t.sheet, q))
                if meaning is None and q in TEMPLATE:
                    ah1 = f"{t.cols['a_h1']}{b['first_row']}"
                    if re.search(rf"{ah1}\s*\*\s*\(\s*1\s*-\s*{ah1}\s*\)", str(b["formula"])):
                        meaning = TEMPLATE[q]
                findings.append(
                    {
                        "sheet": t.sheet,
                        "quantity": q,
                        "kind": "formula",
                        "first_cell": b["cell"],
                        "found_formula": str(b["formula"]),
                        "should_read": fmt_spec(t, q, b["first_row"], t.eta_cell),
                        "meaning": meaning or "",
                        "rows_affected": b["n_rows"],
                        "visible_in_cached_values": bool(b["visible_rows"]),
                        "effect": effect_text(b, t.rows, eff),
                    }
                )
        findings += man.get("extra_findings", [])
        verdict = man.get("verdict") or ("wrong" if findings else "correct")
        if not tables and "verdict" not in man:
            verdict = "cannot_check"
        entry = {"verdict": verdict}
        if verdict == "cannot_check":
            entry["reason"] = man.get("reason", "no training table found")
        entry["sheets"] = res["sheets"]
        entry["tables"] = tables
        entry["findings"] = [] if verdict == "cannot_check" else findings
        entry["unknown_labels"] = unknown
        entry["notes"] = notes_for(man, res)
        out[name] = entry
    return out


def typed_findings(book: so.Book, t: so.Table, info: dict) -> list:
    first = t.key("h1", t.first_row)
    dup = None
    prev = None
    for r in range(t.first_row, t.last_row + 1):
        row = [book.raw.get(t.key(q, r)) for q in so.QUANTITIES if q in t.cols]
        if row == prev:
            dup = r
            break
        prev = row
    out = [
        {
            "sheet": t.sheet,
            "quantity": "h1",
            "kind": "typed_values",
            "first_cell": first[1],
            "found_formula": f"typed number {book.raw.get(first)!r}",
            "should_read": fmt_spec(t, "h1", t.first_row, t.eta_cell)
            + f" (every computed cell of the table, {len(so.COMPUTED)} columns x {t.rows} rows,"
            " is a typed number)",
            "meaning": "a pasted table: values where formulas belong",
            "rows_affected": t.rows,
            "visible_in_cached_values": True,
            "effect": "nothing recalculates; ∂E/∂w3 and ∂E/∂w4 hold the template-bug numbers "
            f"({book.raw.get(t.key('∂E/∂w3', t.first_row))!r} at {t.cols['∂E/∂w3']}{t.first_row},"
            " correct 0.000224813)",
        }
    ]
    if dup:
        eff = info.get("effect", {})
        out.append(
            {
                "sheet": t.sheet,
                "quantity": "w1",
                "kind": "repeated_rows",
                "first_cell": f"{t.cols['w1']}{dup}",
                "found_formula": f"typed {book.raw.get(t.key('w1', dup))!r}, row {dup} repeats"
                f" row {dup - 1} exactly, and so on to row {t.last_row}",
                "should_read": fmt_spec(t, "w1", dup, t.eta_cell),
                "meaning": "training stops: the weights no longer change",
                "rows_affected": t.last_row - dup + 1,
                "visible_in_cached_values": True,
                "effect": f"E_total at the last row {eff.get('E_total_last_file')!r} vs correct"
                f" {eff.get('E_total_last_correct', float('nan')):.6g}",
            }
        )
    return out


def notes_for(man: dict, res: dict) -> str:
    base = man.get("notes", "")
    how = (
        "Established by scripts/student_oracle.py: formulas re-evaluated by its own evaluator and "
        "compared with the cached values; each quantity cell checked against the textbook formula "
        "applied to the row's own cells under the file's numbers and 3 random replacements of "
        "every typed leaf; a clean NumPy run (and one with the template bug) from the first row "
        "sizes the effect; formulas read by hand for the meanings."
    )
    tol = []
    for t in res.get("tables", []):
        c = t.get("consistency", {}).get("cache_vs_eval_rel")
        if c is not None and c > 1e-12:
            tol.append(f"{t['sheet']}: cache vs evaluator {c:.1e} (Google Sheets rounding)")
    return " ".join(x for x in (base, "; ".join(tol), how) if x)


# ---------------------------------------------------------------- tiny TOML writer


def tv(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else "nan"
    if v is None:
        return '""'
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'
    if isinstance(v, list):
        return "[" + ", ".join(tv(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{tv(k)} = {tv(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def to_toml(data: dict) -> str:
    lines = [
        "# Expected verdicts for the 25 student workbooks of the course (files not copied here).",
        "# Generated by scripts/student_expected.py (oracle: scripts/student_oracle.py) plus",
        "# hand reading. verdict: correct | wrong | cannot_check. Quantities: t1 t2 i1 i2 w1..w8",
        "# h1 a_h1 h2 a_h2 o1 a_o1 o2 a_o2 E1 E2 E_total ∂E/∂w1..∂E/∂w8; cells are A1 refs.",
        "",
    ]
    for name, e in data.items():
        lines.append(f"[{tv(name)}]")
        for k in ("verdict", "reason", "sheets", "unknown_labels", "notes"):
            if k in e:
                lines.append(f"{k} = {tv(e[k])}")
        for k in ("tables", "findings"):
            if not e[k]:
                lines.append(f"{k} = []")
        for t in e["tables"]:
            lines.append("")
            lines.append(f"[[{tv(name)}.tables]]")
            for k, v in t.items():
                if v is not None:
                    lines.append(f"{k} = {tv(v)}")
        for f in e["findings"]:
            lines.append("")
            lines.append(f"[[{tv(name)}.findings]]")
            for k, v in f.items():
                lines.append(f"{k} = {tv(v)}")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", nargs="?", default="/work/shared/data/students")
    ap.add_argument("-o", "--out", default="tests/data/students_expected.toml")
    a = ap.parse_args()
    text = to_toml(build(a.folder))
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    tomllib.loads(text)  # the file must parse
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w", encoding="utf-8") as fh:
        fh.write(text)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    so.run_deep(main)
