"""Crude, independent oracle for hand-made 2-2-2 backprop workbooks (not the grader).

It establishes the expected verdicts in tests/data/students_expected.toml. Three witnesses:
1. a tiny formula evaluator re-runs every formula of each table from the file's own constants
   and is compared with the cached values (is the file self-consistent, how precise are caches);
2. a per-cell meaning check: each quantity cell must equal the textbook formula applied to the
   file's own upstream cells of that row (weights: row above and eta). It is repeated with every
   constant leaf the table reads replaced by a random value, so bugs that the course's numbers
   hide (t1 = t2, a formula that reads the wrong but equal cell) show;
3. a clean NumPy training run from the file's first row, to size each bug's numeric effect.

Library of scripts/student_analysis.py (the per-file report) and scripts/student_expected.py.
"""

from __future__ import annotations

import math
import random
import re
import sys
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import openpyxl
from openpyxl.formula import Tokenizer
from openpyxl.utils import column_index_from_string, get_column_letter

warnings.filterwarnings("ignore")

QUANTITIES = (
    ["t1", "t2", "i1", "i2"]
    + [f"w{k}" for k in range(1, 9)]
    + ["h1", "a_h1", "h2", "a_h2", "o1", "a_o1", "o2", "a_o2", "E1", "E2", "E_total"]
    + [f"∂E/∂w{k}" for k in range(1, 9)]
)
COMPUTED = [q for q in QUANTITIES if q not in ("t1", "t2", "i1", "i2")]

_PARTIAL = str.maketrans({"∂": "d", "δ": "d", "Ә": "d", "ә": "d", "𝜕": "d"})


def label_quantity(text: object) -> str | None:
    """Map a header label to a quantity name, or None."""
    if not isinstance(text, str):
        return None
    s = text.strip().translate(_PARTIAL).lower().replace(" ", "")
    if re.fullmatch(r"[ti][12]|w[1-8]|[ho][12]", s):
        return s
    m = re.fullmatch(r"(?:a_?|out_?|act_?)([ho])([12])", s)
    if m:
        return f"a_{m.group(1)}{m.group(2)}"
    if re.fullmatch(r"e[12]", s):
        return s.upper()
    if re.fullmatch(r"e_?(?:tot(?:al)?|t)", s):
        return "E_total"
    m = re.fullmatch(r"d?(?:e(?:_?tot(?:al)?|_t)?)?/?dw([1-8])", s)
    if m:
        return f"∂E/∂w{m.group(1)}"
    return None


# ---------------------------------------------------------------- formula evaluation


def _exp(x: float) -> float:
    return math.exp(x)


FUNCS = {
    "EXP": _exp,
    "POWER": lambda a, b: a**b,
    "SQRT": math.sqrt,
    "ABS": abs,
    "LN": math.log,
    "SUM": lambda *a: sum(_flat(a)),
    "MAX": lambda *a: max(_flat(a)),
    "MIN": lambda *a: min(_flat(a)),
    "IF": lambda c, a, b=0: a if c else b,
}


def _flat(args):
    out = []
    for a in args:
        if isinstance(a, list):
            out.extend(x for x in a if isinstance(x, (int, float)))
        elif isinstance(a, (int, float)):
            out.append(a)
    return out


REF = re.compile(
    r"^(?:'?(?P<sheet>[^!]+?)'?!)?\$?(?P<c1>[A-Z]{1,3})\$?(?P<r1>\d+)(?::\$?(?P<c2>[A-Z]{1,3})\$?(?P<r2>\d+))?$"
)


@dataclass
class Compiled:
    code: object
    refs: list  # (sheet, coord)
    text: str


class Book:
    """Formulas, cached values and a memoised evaluator with overridable constants."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            wf = openpyxl.load_workbook(path, data_only=False)
            wv = openpyxl.load_workbook(path, data_only=True)
        except Exception:  # e.g. a style index out of range: read-only mode skips styles
            wf = openpyxl.load_workbook(path, data_only=False, read_only=True)
            wv = openpyxl.load_workbook(path, data_only=True, read_only=True)
        self.sheets = [ws.title for ws in wf.worksheets]
        self.raw: dict[tuple[str, str], object] = {}
        self.cached: dict[tuple[str, str], object] = {}
        for ws in wf.worksheets:
            for row in ws.iter_rows():
                for c in row:
                    v = getattr(c, "value", None)
                    if v is not None:
                        self.raw[(ws.title, c.coordinate)] = v
        for ws in wv.worksheets:
            for row in ws.iter_rows():
                for c in row:
                    v = getattr(c, "value", None)
                    if v is not None:
                        self.cached[(ws.title, c.coordinate)] = v
        self._compiled: dict[tuple[str, str], Compiled] = {}
        self.overrides: dict[tuple[str, str], float] = {}
        self.memo: dict[tuple[str, str], object] = {}

    def is_formula(self, key) -> bool:
        v = self.raw.get(key)
        return isinstance(v, str) and v.startswith("=")

    def compile(self, key) -> Compiled:
        if key in self._compiled:
            return self._compiled[key]
        sheet = key[0]
        text = self.raw[key]
        toks = Tokenizer(text).items
        parts: list[str] = []
        refs = []
        for t in toks:
            if t.type == "OPERAND" and t.subtype == "RANGE":
                m = REF.match(t.value.replace("$", ""))
                if not m:
                    raise ValueError(f"unsupported reference {t.value!r}")
                sh = m.group("sheet") or sheet
                sh = sh.strip("'")
                if m.group("c2"):
                    c1, r1 = column_index_from_string(m.group("c1")), int(m.group("r1"))
                    c2, r2 = column_index_from_string(m.group("c2")), int(m.group("r2"))
                    cells = [
                        (sh, f"{get_column_letter(c)}{r}")
                        for r in range(r1, r2 + 1)
                        for c in range(c1, c2 + 1)
                    ]
                    refs.extend(cells)
                    parts.append(f"_R({cells!r})")
                else:
                    k = (sh, f"{m.group('c1')}{m.group('r1')}")
                    refs.append(k)
                    parts.append(f"_V({k!r})")
            elif t.type == "OPERAND":
                parts.append(t.value if t.subtype == "NUMBER" else repr(t.value))
            elif t.type == "FUNC" and t.subtype == "OPEN":
                name = t.value[:-1].upper().replace("_XLFN.", "")
                if name not in FUNCS:
                    raise ValueError(f"unsupported function {name}")
                parts.append(f"_F[{name!r}](")
            elif t.type in ("FUNC", "PAREN"):
                parts.append(")" if t.subtype == "CLOSE" else "(")
            elif t.type == "SEP":
                parts.append(",")
            elif t.type == "OPERATOR-INFIX":
                parts.append({"^": "**", "=": "==", "<>": "!=", "&": "+"}.get(t.value, t.value))
            elif t.type == "OPERATOR-PREFIX":
                parts.append(t.value)
            elif t.type == "OPERATOR-POSTFIX":
                parts.append("/100")
            elif t.type == "WHITE-SPACE":
                continue
            else:
                raise ValueError(f"token {t.type} {t.value!r}")
        src = " ".join(parts)
        if re.search(r"(^|[(,*/+\-])\s*-\s*[^*]+\*\*", src) and "^" in text:
            # Excel binds unary minus tighter than ^; none of the studied files needs it.
            pass
        comp = Compiled(compile(src, "<f>", "eval"), refs, src)
        self._compiled[key] = comp
        return comp

    def value(self, key):
        if key in self.overrides:
            return self.overrides[key]
        if key in self.memo:
            return self.memo[key]
        raw = self.raw.get(key)
        if self.is_formula(key):
            comp = self.compile(key)
            try:
                v = eval(
                    comp.code,
                    {"_V": self.value, "_R": lambda ks: [self.value(k) for k in ks], "_F": FUNCS},
                )
            except (ZeroDivisionError, OverflowError, TypeError, ValueError):
                v = float("nan")
            if isinstance(v, bool):
                v = float(v)
        elif isinstance(raw, str):
            try:
                v = float(raw)  # a number typed as text (Hancom writes '0')
            except ValueError:
                v = raw
        else:
            v = raw if raw is not None else 0.0
        self.memo[key] = v
        return v

    def leaves(self, keys) -> set:
        """Constant numeric cells that the given cells read, transitively."""
        seen, out, stack = set(), set(), list(keys)
        while stack:
            k = stack.pop()
            if k in seen:
                continue
            seen.add(k)
            if self.is_formula(k) and self.compile(k).refs:
                stack.extend(self.compile(k).refs)
            elif self.is_formula(k):  # '=0.5': a typed number all the same
                out.add(k)
            elif isinstance(self.raw.get(k), (int, float)):
                out.add(k)
        return out


# ---------------------------------------------------------------- tables


@dataclass
class Table:
    sheet: str
    header_row: int
    cols: dict  # quantity -> column letter
    labels: dict  # quantity -> label text
    first_row: int
    last_row: int
    eta_cell: str | None = None
    eta_label: str | None = None

    @property
    def rows(self) -> int:
        return self.last_row - self.first_row + 1

    def key(self, q: str, r: int):
        return (self.sheet, f"{self.cols[q]}{r}")


ETA_LABEL = re.compile(
    r"^\s*(η|eta|lr|learning[_ ]?rate.*|learningrate|n|h|ͷ|theta)\s*[=:]?\s*$",
    re.IGNORECASE,
)


def find_tables(book: Book) -> list[Table]:
    tables = []
    for sheet in book.sheets:
        byrow: dict[int, list] = {}
        for (sh, coord), v in book.raw.items():
            if sh != sheet:
                continue
            q = label_quantity(v)
            if q:
                m = re.match(r"([A-Z]+)(\d+)", coord)
                byrow.setdefault(int(m.group(2)), []).append(
                    (column_index_from_string(m.group(1)), q, v)
                )
        for r, items in sorted(byrow.items()):
            if len({q for _, q, _ in items}) < 16:
                continue
            items.sort()
            segs, cur = [], {}
            for ci, q, v in items:
                if q in cur:
                    segs.append(cur)
                    cur = {}
                cur[q] = (get_column_letter(ci), v)
            segs.append(cur)
            for seg in segs:
                if len(seg) < 16:
                    continue
                cols = {q: c for q, (c, _) in seg.items()}
                labels = {q: v for q, (_, v) in seg.items()}
                last = r
                while 2 * sum(
                    book.raw.get((sheet, f"{c}{last + 1}")) is not None for c in cols.values()
                ) >= len(cols):
                    last += 1
                t = Table(sheet, r, cols, labels, r + 1, last)
                t.eta_cell, t.eta_label = find_eta(book, t)
                tables.append(t)
    return tables


def eta_by_label(book: Book, t: Table):
    """A pasted table has no update formula: take the labelled number just above the header."""
    for r in range(max(1, t.header_row - 3), t.header_row):
        for c in range(1, 40):
            v = book.raw.get((t.sheet, f"{get_column_letter(c)}{r}"))
            if isinstance(v, str) and ETA_LABEL.match(v):
                n = book.raw.get((t.sheet, f"{get_column_letter(c + 1)}{r}"))
                if isinstance(n, (int, float)):
                    return f"{get_column_letter(c + 1)}{r}", v
    return None, None


def find_eta(book: Book, t: Table):
    """eta: the cell that the second row's weight updates read outside the table."""
    if "w1" not in t.cols:
        return None, None
    k = t.key("w1", t.first_row + 1)
    if not book.is_formula(k):
        return eta_by_label(book, t)
    inside = {t.key("w1", t.first_row)}
    if "∂E/∂w1" in t.cols:
        inside.add(t.key("∂E/∂w1", t.first_row))
    refs = [r for r in book.compile(k).refs if r not in inside]
    if len(refs) != 1:
        return None, None
    sh, coord = refs[0]
    m = re.match(r"([A-Z]+)(\d+)", coord)
    ci, ri = column_index_from_string(m.group(1)), int(m.group(2))
    label = None
    for dc, dr in ((-1, 0), (0, -1), (-2, 0), (-3, 0), (0, -2)):
        if ci + dc < 1 or ri + dr < 1:
            continue
        v = book.raw.get((sh, f"{get_column_letter(ci + dc)}{ri + dr}"))
        if isinstance(v, str) and not v.startswith("="):
            label = v
            break
    name = coord if sh == t.sheet else f"'{sh}'!{coord}"
    return name, label


# ---------------------------------------------------------------- meaning check


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def spec_row(get, q: str):
    """Textbook value of quantity q from the row's own upstream values (get(q))."""
    if q == "h1":
        return get("w1") * get("i1") + get("w2") * get("i2")
    if q == "h2":
        return get("w3") * get("i1") + get("w4") * get("i2")
    if q in ("a_h1", "a_h2", "a_o1", "a_o2"):
        return sig(get(q[2:]))
    if q == "o1":
        return get("w5") * get("a_h1") + get("w6") * get("a_h2")
    if q == "o2":
        return get("w7") * get("a_h1") + get("w8") * get("a_h2")
    if q == "E1":
        return 0.5 * (get("t1") - get("a_o1")) ** 2
    if q == "E2":
        return 0.5 * (get("t2") - get("a_o2")) ** 2
    if q == "E_total":
        return get("E1") + get("E2")
    d1 = (get("a_o1") - get("t1")) * get("a_o1") * (1 - get("a_o1"))
    d2 = (get("a_o2") - get("t2")) * get("a_o2") * (1 - get("a_o2"))
    k = int(q[-1])
    if k == 5:
        return d1 * get("a_h1")
    if k == 6:
        return d1 * get("a_h2")
    if k == 7:
        return d2 * get("a_h1")
    if k == 8:
        return d2 * get("a_h2")
    g1 = (d1 * get("w5") + d2 * get("w7")) * get("a_h1") * (1 - get("a_h1"))
    g2 = (d1 * get("w6") + d2 * get("w8")) * get("a_h2") * (1 - get("a_h2"))
    return {1: g1 * get("i1"), 2: g1 * get("i2"), 3: g2 * get("i1"), 4: g2 * get("i2")}[k]


def row_getter(book: Book, t: Table, r: int, eta: float | None):
    cache: dict[str, float] = {}

    def get(q: str) -> float:
        if q in cache:
            return cache[q]
        if q in t.cols:
            v = book.value(t.key(q, r))
            v = float(v) if isinstance(v, (int, float)) else float("nan")
        elif q.startswith("w") and r > t.first_row and eta is not None:
            prev = row_getter(book, t, r - 1, eta)
            v = prev(q) - eta * prev(f"∂E/∂{q}")
        else:
            v = spec_row(get, q)
        cache[q] = v
        return v

    return get


def close(a: float, b: float, rtol: float = 1e-9, atol: float = 1e-13) -> bool:
    return abs(a - b) <= atol + rtol * max(abs(a), abs(b))


def shown_half_ulp(v: object) -> float:
    """Half a unit in the last shown decimal of a typed number (pasted values are rounded)."""
    if not isinstance(v, float):
        return 0.0
    r = repr(v)
    if "e" in r:
        mant, ex = r.split("e")
        dec = len(mant.split(".")[1]) if "." in mant else 0
        return 0.5 * 10.0 ** (-dec + int(ex))
    dec = len(r.split(".")[1]) if "." in r else 0
    return 0.5 * 10.0**-dec


def meaning_check(book: Book, t: Table, seeds=(None, 1, 2, 3)) -> dict:
    """Mismatching cells per quantity, under the file's values and under random leaves."""
    eta_key = eta_key_of(t)
    keys = [t.key(q, r) for q in t.cols for r in range(t.first_row, t.last_row + 1)]
    leaves = sorted(book.leaves(keys))
    book.overrides, book.memo = {}, {}
    base = {k: book.value(k) for k in leaves}
    bad: dict[str, dict] = {}
    empty: dict[str, list] = {}
    for seed in seeds:
        book.overrides = {}
        book.memo = {}
        if seed is not None:
            rnd = random.Random(seed)
            for k in leaves:
                v = float(base[k])
                book.overrides[k] = v + rnd.uniform(-0.4, 0.4) * max(abs(v), 0.1)
        eta = float(book.value(eta_key)) if eta_key else None
        for r in range(t.first_row, t.last_row + 1):
            get = row_getter(book, t, r, eta)
            for q in COMPUTED:
                if q not in t.cols:
                    continue
                if q.startswith("w") and (r == t.first_row or eta is None):
                    continue
                k = t.key(q, r)
                if book.raw.get(k) is None:
                    if seed is None:
                        empty.setdefault(q, []).append(k[1])
                    continue
                try:
                    if q.startswith("w"):
                        prev = row_getter(book, t, r - 1, eta)
                        want = prev(q) - eta * prev(f"∂E/∂{q}")
                    else:
                        want = spec_row(get, q)
                    have = get(q)
                except (OverflowError, ZeroDivisionError, ValueError):
                    continue
                ok = close(have, want)
                if not ok and not book.is_formula(k) and seed is None:
                    # a typed (pasted) number: allow its own rounding and the rounding it inherits
                    ok = abs(have - want) <= shown_half_ulp(book.raw.get(k)) + 2e-6 + 5e-6 * abs(
                        want
                    )
                if not ok:
                    b = bad.setdefault(q, {"rows": {}, "first_row": r})
                    rel = abs(have - want) / max(abs(want), 1e-300)
                    if r not in b["rows"]:
                        b["rows"][r] = {
                            "cell": k[1],
                            "seed": seed,
                            "have": have,
                            "want": want,
                            "rel": rel,
                            "formula": book.raw.get(k),
                        }
                    b["first_row"] = min(b["first_row"], r)
    for b in bad.values():
        f = b["rows"][b["first_row"]]
        b.update({k: f[k] for k in ("cell", "seed", "have", "want", "rel", "formula")})
        b["n_rows"] = len(b["rows"])
        b["visible_rows"] = sorted(r for r, x in b["rows"].items() if x["seed"] is None)
        del b["rows"]
    book.overrides = {}
    book.memo = {}
    return {"bad": bad, "empty": empty}


def eta_key_of(t: Table):
    if not t.eta_cell:
        return None
    m = re.match(r"(?:'(.+)'!)?([A-Z]+\d+)", t.eta_cell)
    return (m.group(1) or t.sheet, m.group(2))


def numpy_run(book: Book, t: Table, eta: float, template_bug: bool = False) -> dict:
    """Clean training run from the first row; returns per-quantity arrays.

    template_bug: reproduce the course template's ∂E/∂w3, ∂E/∂w4, which use a_h1·(1 − a_h1)
    where a_h2·(1 − a_h2) belongs, to tell that bug apart from any other deviation.
    """
    first = t.first_row

    def gv(q: str) -> float:
        cached = book.cached.get(t.key(q, first))
        return float(cached if cached is not None else book.value(t.key(q, first)))

    i = np.array([gv("i1"), gv("i2")])
    tt = np.array([gv("t1"), gv("t2")])
    W1 = np.array([[gv("w1"), gv("w2")], [gv("w3"), gv("w4")]])
    W2 = np.array([[gv("w5"), gv("w6")], [gv("w7"), gv("w8")]])
    out: dict[str, list] = {q: [] for q in COMPUTED}
    s = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    for _ in range(t.rows):
        h = W1 @ i
        ah = s(h)
        o = W2 @ ah
        ao = s(o)
        E = 0.5 * (tt - ao) ** 2
        do = (ao - tt) * ao * (1 - ao)
        gW2 = np.outer(do, ah)
        dh = (W2.T @ do) * ah * (1 - ah)
        if template_bug:
            dh[1] = (W2.T @ do)[1] * ah[0] * (1 - ah[0])
        gW1 = np.outer(dh, i)
        vals = {
            "h1": h[0],
            "h2": h[1],
            "a_h1": ah[0],
            "a_h2": ah[1],
            "o1": o[0],
            "o2": o[1],
            "a_o1": ao[0],
            "a_o2": ao[1],
            "E1": E[0],
            "E2": E[1],
            "E_total": E.sum(),
        }
        for k in range(4):
            vals[f"w{k + 1}"] = W1.flat[k]
            vals[f"w{k + 5}"] = W2.flat[k]
            vals[f"∂E/∂w{k + 1}"] = gW1.flat[k]
            vals[f"∂E/∂w{k + 5}"] = gW2.flat[k]
        for q in COMPUTED:
            out[q].append(vals[q])
        W1 = W1 - eta * gW1
        W2 = W2 - eta * gW2
    return {q: np.array(v) for q, v in out.items()}


def run_deep(main: Callable[[], None]) -> None:
    """Run `main` in a thread with a deep stack: the evaluator recurses once per cell it reads,
    and a 200-row table chains thousands of cells."""
    sys.setrecursionlimit(200000)
    threading.stack_size(512 * 1024 * 1024)
    th = threading.Thread(target=main)
    th.start()
    th.join()
