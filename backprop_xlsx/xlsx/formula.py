"""The spreadsheet formula language, as far as checking a workbook needs it.

A formula is tokenized with its references relative to its cell, so that a column's cells
compare equal when they hold the same formula (`relative_key`); a `Template` renders it back
into any row; a `Compiler` turns it into a tree of NumPy closures, each reference mapped by the
caller, to run on inputs other than the sheet's. Formulas come from untrusted files, so nothing
a file says is run as Python (closures, never `eval`), and everything is bounded (MAX_FORMULA,
MAX_NESTING, finite doubles; tokenizing is one linear pass): past a bound the formula is
`Unsupported`, a finding, never an exception out of the verifier.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np
from openpyxl.utils import column_index_from_string, get_column_letter
from openpyxl.utils.cell import coordinate_to_tuple

MAX_COLUMN = 16384  # XFD
MAX_FORMULA = 8192  # characters, as Excel
MAX_NESTING = 64  # levels of parentheses, functions and signs, as Excel's nesting limit


@functools.cache
def column_number(letters: str) -> int:
    """Column number of `letters` ("AE" → 31), cached: called for every cell read."""
    return column_index_from_string(letters.upper())


def cell_key(a1: str) -> tuple[int, int]:
    """(row, column) of an A1 cell name: openpyxl's parser, which refuses what is not one."""
    return coordinate_to_tuple(a1)


def sheet_ref(title: str) -> str:
    """A sheet's name as formulas write it: bare if it can be (Setup), quoted if not ('LR 2')."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z_.]*", title):
        return title
    return "'" + title.replace("'", "''") + "'"


# ---------------------------------------------------------------------------------------------
# Tokens, relative form, rendering


class Ref(NamedTuple):
    """A cell reference; `row`/`col` are absolute numbers where `*_abs`, else offsets."""

    sheet: str | None  # canonical sheet title; None for the formula's own sheet
    prefix: str  # the sheet prefix exactly as written ("'Setup'!"), for rendering
    col_abs: bool
    col: int
    row_abs: bool
    row: int


# One token at a position, each alternative without backtracking (possessive quantifiers), and
# every position tried once: a string or quoted sheet name that does not end is an error, not a
# retry one character later, so tokenizing is linear even for 8,192 quotes.
_TOKEN = re.compile(
    r"""
    (?P<ws>\s++)
  | (?P<str>"(?:[^"]|"")*+")
  | (?P<ref>(?:(?P<sheet>'(?:[^']|'')++'|[A-Za-z_\\][\w.]*+)!)?
        (?P<cabs>\$?)(?P<col>[A-Za-z]{1,3})(?P<rabs>\$?)(?P<row>[0-9]{1,7})
        (?![\w(.!$]|:(?!\$?[A-Za-z]{1,3}\$?[0-9])))
  | (?P<num>(?:[0-9]++\.?[0-9]*+|\.[0-9]++)(?:[Ee][+-]?[0-9]++)?)
  | (?P<name>[A-Za-z_\\][\w.]*+)
  | (?P<op>[^"'])
    """,
    re.X | re.S,
)

Token = tuple[str, Any]  # ("ref", Ref) | ("num", text) | ("name", text) | ("op", text) | …


def _canonical_sheet(written: str, titles: dict[str, str]) -> str:
    name = written[1:-1].replace("''", "'") if written.startswith("'") else written
    return titles.get(name.casefold(), name)


def tokenize(formula: str, row: int, col: int, own: str, titles: dict[str, str]) -> list[Token]:
    """Split a formula (no leading '=') into tokens, references made relative to (row, col).

    Unsupported if it is longer than MAX_FORMULA or has a string or sheet name that never ends.
    """
    if len(formula) > MAX_FORMULA:
        raise Unsupported(f"longer than {MAX_FORMULA:,} characters ({len(formula):,})")
    tokens: list[Token] = []
    pos = 0
    while pos < len(formula):
        m = _TOKEN.match(formula, pos)
        if m is None:
            if formula[pos] == '"':
                raise Unsupported(f"a string that does not end (character {pos + 1})")
            raise Unsupported(f"a quoted sheet name without a cell after it (character {pos + 1})")
        pos = m.end()
        kind = m.lastgroup
        if kind == "ws":
            continue
        if kind != "ref":
            tokens.append((kind, m.group()))
            continue
        sheet = m["sheet"]
        canon = _canonical_sheet(sheet, titles) if sheet else None
        c, r = column_number(m["col"]), int(m["row"])
        cabs, rabs = bool(m["cabs"]), bool(m["rabs"])
        own_sheet = None if canon == own else canon
        if not sheet and len(tokens) >= 2 and tokens[-1] == ("op", ":") and tokens[-2][0] == "ref":
            own_sheet = tokens[-2][1].sheet  # the end of a range A1:B2 is on the start's sheet
        ref = Ref(
            own_sheet,
            sheet + "!" if sheet else "",
            cabs,
            c if cabs else c - col,
            rabs,
            r if rabs else r - row,
        )
        tokens.append(("ref", ref))
    return tokens


def relative_key(tokens: list[Token]) -> tuple:
    """What must be equal for two cells to hold the same formula: refs as offsets, names
    upper-cased, sheet names canonical, numbers by value, spaces and quoting ignored."""
    key: list[Any] = []
    for kind, value in tokens:
        if kind == "ref":
            key.append(value._replace(prefix=""))
        elif kind == "num":
            key.append(float(value))
        else:
            key.append(value.upper() if kind == "name" else value)
    return tuple(key)


class Template(NamedTuple):
    """A formula as a str.format pattern for one column: field i is the row plus offsets[i]."""

    pattern: str
    offsets: tuple[int, ...]  # distinct row offsets of the relative references

    def render(self, row: int) -> str:
        return self.pattern.format(*[row + d for d in self.offsets])

    def render_rows(self, first: int, n: int) -> list[str]:
        """render(first), render(first + 1), … for n rows, in C (map over ranges)."""
        if not self.offsets:
            return [self.pattern] * n
        return list(
            map(self.pattern.format, *[range(first + d, first + d + n) for d in self.offsets])
        )


def template(tokens: list[Token], col: int) -> Template:
    """The tokens, as written, ready to be rendered in any row of column `col`."""
    parts: list[str] = []
    offsets: list[int] = []
    for kind, value in tokens:
        if kind != "ref":
            parts.append(value.replace("{", "{{").replace("}", "}}"))
            continue
        ref: Ref = value
        number = ref.col if ref.col_abs else col + ref.col
        if not 1 <= number <= MAX_COLUMN:
            parts.append("#REF!")  # what Excel shows for a reference moved off the sheet
            continue
        letters = get_column_letter(number)
        text = ref.prefix.replace("{", "{{").replace("}", "}}")
        text += ("$" if ref.col_abs else "") + letters
        if ref.row_abs:
            text += f"${ref.row}"
        else:
            if ref.row not in offsets:
                offsets.append(ref.row)
            text += "{" + str(offsets.index(ref.row)) + "}"
        parts.append(text)
    return Template("".join(parts), tuple(offsets))


def render(tokens: list[Token], row: int, col: int) -> str:
    """A1 text of a (relative) formula placed in (row, col); spaces are not kept."""
    return template(tokens, col).render(row)


# ---------------------------------------------------------------------------------------------
# Formulas compiled to NumPy


class Unsupported(Exception):
    """A formula outside the language compiled here (+ - * / ^ comparisons ( ) numbers and
    EXP LN TANH MAX IF ABS SQRT QUOTIENT MOD INDEX, and POWER in `compile_tokens`), or past a
    bound (length, nesting, a number no double can hold)."""


Env = Mapping[str, Any]  # the inputs a compiled formula's references read, named by the caller
Expr = Callable[[Env], Any]  # a compiled formula: its value for the inputs in an Env


def _power(x: Any, y: Any) -> Any:
    """x^y, with x^2 as x·x: what a spreadsheet's correctly rounded pow gives. numpy 1.24's
    np.power(x, 2.0) is an ulp off for ~17 % of x, which a difference such as 1 − x² can
    magnify past any tight tolerance."""
    if np.ndim(y) == 0 and y == 2:
        return np.multiply(x, x)
    return np.power(x, y)


_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.divide,
    "^": _power,
}


def _constant(value: np.float64) -> Expr:
    return lambda env: value


def _chain(first: Expr, rest: list[tuple[Callable[[Any, Any], Any], Expr]]) -> Expr:
    """first op₁ x₁ op₂ x₂ …, from the left, in a loop: a long sum is not a deep tree."""

    def run(env: Env) -> Any:
        value = first(env)
        for op, operand in rest:
            value = op(value, operand(env))
        return value

    return run


def _apply(fn: Callable[[Any], Any], arg: Expr) -> Expr:
    return lambda env: fn(arg(env))


# Comparisons give TRUE or FALSE, which arithmetic takes as 1 or 0, as in Excel.
COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "=": np.equal,
    "<>": np.not_equal,
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
}


def _max(*args: Any) -> Any:
    value = args[0]
    for other in args[1:]:
        value = np.maximum(value, other)
    return value


def _if(condition: Any, yes: Any, no: Any) -> Any:
    return np.where(np.asarray(condition) != 0, yes, no)


def _quotient(a: Any, b: Any) -> Any:
    """QUOTIENT: the integer part of a/b, toward zero (exact for whole numbers below 2⁵³)."""
    with np.errstate(all="ignore"):
        return np.trunc(np.divide(a, b))


def _mod(a: Any, b: Any) -> Any:
    """MOD: a − b·INT(a/b), the sign of b's, as a spreadsheet's; NaN (#DIV/0!) for b = 0."""
    with np.errstate(all="ignore"):
        return np.where(np.asarray(b) == 0, np.nan, np.mod(a, b))


def pick(table: np.ndarray, r: Any, c: Any = 1.0) -> np.ndarray:
    """INDEX(table, r, c), 1-based, truncating as a spreadsheet does; NaN (#REF!) outside it.

    `table` is (rows, columns) or (rows, columns, n), n values side by side (input sets) that
    r and c run along."""
    table = np.asarray(table)
    rows, cols = table.shape[:2]
    with np.errstate(invalid="ignore"):
        r, c = np.trunc(np.asarray(r, np.float64)), np.trunc(np.asarray(c, np.float64))
    shape = np.broadcast_shapes(r.shape, c.shape, table.shape[2:])
    r, c = np.broadcast_to(r, shape), np.broadcast_to(c, shape)
    inside = (r >= 1) & (r <= rows) & (c >= 1) & (c <= cols)
    at = (np.where(inside, r - 1, 0).astype(np.intp), np.where(inside, c - 1, 0).astype(np.intp))
    if table.ndim == 3:
        along = np.arange(table.shape[2]) if table.shape[2] > 1 else np.zeros(1, np.intp)
        at = (*at, np.broadcast_to(along, shape))
    return np.where(inside, table[at], np.nan)


# name → (NumPy function, fewest and most arguments)
_FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int]] = {
    "EXP": (np.exp, 1, 1),
    "LN": (np.log, 1, 1),
    "TANH": (np.tanh, 1, 1),
    "MAX": (_max, 1, 255),
    "IF": (_if, 3, 3),
    "ABS": (np.abs, 1, 1),
    "SQRT": (np.sqrt, 1, 1),  # RMSprop's and Adam's √v
    "QUOTIENT": (_quotient, 2, 2),
    "MOD": (_mod, 2, 2),
    "INDEX": (pick, 2, 3),  # its first argument a range, resolved by the compiler's caller
}


class Algebra(NamedTuple):
    """What a compiled formula computes with: NumPy arrays, or (`rounding.BOUNDED`) arrays that
    carry a bound on their rounding error. The parser is the same; only the operations differ."""

    binary: Mapping[str, Callable[[Any, Any], Any]]  # + - * / ^
    compare: Mapping[str, Callable[[Any, Any], Any]]  # = <> < <= > >=, as 1 or 0
    functions: Mapping[str, Callable[..., Any]]  # EXP LN TANH MAX IF ABS SQRT QUOTIENT MOD INDEX
    negative: Callable[[Any], Any]
    constant: Callable[[np.float64], Any]
    lift: Callable[[Any], Any] | None  # applied to every value read from the Env; None: as is


def _as_number(compare: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    return lambda a, b: compare(a, b).astype(np.float64)


NUMPY = Algebra(
    _BINARY,
    {op: _as_number(fn) for op, fn in COMPARE.items()},
    {name: fn for name, (fn, _, _) in _FUNCTIONS.items()},
    np.negative,
    lambda value: value,
    None,
)


class Compiler:
    """Excel-precedence recursive descent to a tree of NumPy operations.

    Excel binds unary minus tighter than ^ (-2^2 = 4) and evaluates ^ left to right, unlike
    Python; the tree follows Excel. Each parenthesis, function and sign is one level of
    nesting, at most MAX_NESTING, which also bounds the recursion here and in evaluation.
    """

    functions = _FUNCTIONS

    def __init__(
        self,
        tokens: list[Token],
        resolve: Callable[[Ref], Expr],
        algebra: Algebra = NUMPY,
        resolve_range: Callable[[Ref, Ref], Expr] | None = None,
    ) -> None:
        self.algebra = algebra
        self.tokens = tokens
        self.pos = 0
        self.resolve = resolve
        self.resolve_range = resolve_range  # INDEX's range → its table; None: no ranges
        self.depth = 0

    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, text: str) -> bool:
        token = self.peek()
        if token is not None and token[0] == "op" and token[1] == text:
            self.pos += 1
            return True
        return False

    def compile(self) -> Expr:
        self.take("=")  # as typed; the file's XML has none
        expr = self.comparison()
        if self.peek() is not None:
            raise Unsupported(f"unexpected {self.peek()[1]!r}")
        return expr

    def comparison(self) -> Expr:
        """sum [op sum]: Excel's comparisons bind loosest (1+1>1 is (1+1)>1)."""
        left = self.sum()
        for op in ("<>", "<=", ">=", "=", "<", ">"):
            if self._take_operator(op):
                right = self.sum()
                compare = self.algebra.compare[op]
                return lambda env: compare(left(env), right(env))
        return left

    def _take_operator(self, text: str) -> bool:
        """An operator of one or two characters (the tokens are single characters)."""
        end = self.pos + len(text)
        if end > len(self.tokens):
            return False
        if all(
            tok[0] == "op" and tok[1] == ch
            for tok, ch in zip(self.tokens[self.pos : end], text, strict=True)
        ):
            self.pos = end
            return True
        return False

    def _left_to_right(self, ops: str, operand: Callable[[], Expr]) -> Expr:
        """operand (op operand)*, grouped from the left; `ops` are Excel's operators."""
        first = operand()
        rest = []
        while True:
            token = self.peek()
            if token is None or token[0] != "op" or token[1] not in ops:
                return _chain(first, rest) if rest else first
            self.pos += 1
            rest.append((self.algebra.binary[token[1]], operand()))

    def sum(self) -> Expr:
        return self._left_to_right("+-", self.product)

    def product(self) -> Expr:
        return self._left_to_right("*/", self.power)

    def power(self) -> Expr:
        return self._left_to_right("^", self.unary)

    def _nested(self, inner: Callable[[], Expr]) -> Expr:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise Unsupported(f"nested more than {MAX_NESTING} levels deep")
        try:
            return inner()
        finally:
            self.depth -= 1

    def unary(self) -> Expr:
        if self.take("-"):
            return _apply(self.algebra.negative, self._nested(self.unary))
        if self.take("+"):
            return self._nested(self.unary)
        return self.primary()

    def primary(self) -> Expr:
        token = self.peek()
        if token is None:
            raise Unsupported("formula ends too early")
        kind, value = token
        self.pos += 1
        if kind == "num":
            number = float(value)
            if not math.isfinite(number):
                raise Unsupported(f"the number {value[:30]} is out of range")
            return _constant(self.algebra.constant(np.float64(number)))
        if kind == "ref":
            return self.resolve(value)
        if kind == "name" and value.upper() in self.functions and self.take("("):
            return self._nested(lambda: self._call(value.upper()))
        if kind == "op" and value == "(":
            expr = self._nested(self.comparison)
            if not self.take(")"):
                raise Unsupported("( without )")
            return expr
        raise Unsupported(
            f"{value[:30]!r} is not allowed (only + - * / ^ comparisons ( ) numbers and "
            f"{' '.join(self.functions)})"
        )

    def _call(self, name: str) -> Expr:
        """NAME( arg, … ), the opening parenthesis taken."""
        fn, fewest, most = self.functions[name]
        fn = self.algebra.functions.get(name, fn)  # the algebra's own, where it has one
        args = [self._range() if name == "INDEX" else self.comparison()]
        while self.take(","):
            args.append(self.comparison())
        if not self.take(")"):
            raise Unsupported(f"{name}( without )")
        if not fewest <= len(args) <= most:
            raise Unsupported(f"{name} takes {fewest}-{most} arguments, not {len(args)}")
        return lambda env: fn(*(arg(env) for arg in args))

    def _range(self) -> Expr:
        """A1:B2, INDEX's first argument: the table `resolve_range` makes of it."""
        tokens = self.tokens[self.pos : self.pos + 3]
        if (
            self.resolve_range is None
            or len(tokens) < 3
            or tokens[0][0] != "ref"
            or tokens[1] != ("op", ":")
            or tokens[2][0] != "ref"
        ):
            raise Unsupported("INDEX reads only a range of cells bpxl writes")
        self.pos += 3
        return self.resolve_range(tokens[0][1], tokens[2][1])


# What people write by hand besides: POWER(x, 2) for x^2.
_HAND_FUNCTIONS = {**_FUNCTIONS, "POWER": (np.power, 2, 2)}


class _HandCompiler(Compiler):
    functions = _HAND_FUNCTIONS


def compile_tokens(tokens: list[Token], resolve: Callable[[Ref], Expr]) -> Expr:
    """Any formula as NumPy operations, each reference mapped by `resolve` (which may raise
    Unsupported), POWER included: for cells whose meanings the caller knows one by one, such as
    a hand-made workbook's tables, where people write POWER too."""
    return _HandCompiler(tokens, resolve).compile()
