"""`bpxl verify` on hostile workbooks: each one built here, inside the test, from a real workbook.

A workbook someone emails must read nothing, reach nothing and exhaust nothing: every case ends
in one line, a finding (exit 1) or an error (exit 2), quickly and in little memory; never a
traceback, a local file's contents, or formula text that rewrites the terminal.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import struct
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from _seed import BOOK_STEPS as STEPS
from _spoil import edit_sheet, rewrite, sheet_part
from click.testing import CliRunner

from backprop_xlsx.cli import cli
from backprop_xlsx.errors import BpxlError
from backprop_xlsx.mlp import layout
from backprop_xlsx.verify.lr_formulas import compile_formula
from backprop_xlsx.xlsx.formula import MAX_NESTING, Unsupported, tokenize
from backprop_xlsx.xlsx.parts import check_prolog
from backprop_xlsx.xlsx.read import Package

ROOT = Path(__file__).resolve().parent.parent
SHEET = "LR 0.5"
WHERE = "'LR 0.5'!"
SECRET = "bpxl-secret-0f3a9c"  # what the local file holds; it must never be printed
QUICK = 20.0  # seconds: generous, only to tell "returns" from "hangs" (the old code took 37+ s)


def set_formula(ref: str, formula: str) -> Callable[[str], str]:
    """Replace the formula of cell `ref` (XML-escaped here, as a file would carry it)."""
    escaped = formula.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    escaped = escaped.replace("\n", "&#10;")
    pattern = re.compile(rf'(<c r="{ref}"[^>]*>\s*<f[^>]*>)[^<]*(</f>)')
    return lambda xml: pattern.sub(lambda m: m[1] + escaped + m[2], xml, count=1)


def run(*args: object) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["verify", *map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )  # an exception out of the command: a user would see a traceback
    return result.exit_code, result.stdout, result.stderr


def assert_one_line_error(code: int, out: str, err: str, *words: str) -> None:
    assert code == 2, (code, out, err)
    assert out == ""
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word in err, err


def doctype_case(kind: str, secret_file: Path) -> Callable[[bytes], bytes]:
    """Put a DOCTYPE into a part and use its entity where a value is read: an external entity
    naming a local file (XXE), or nested internal entities worth gigabytes (billion laughs)."""
    if kind == "xxe":
        dtd, ref = f'<!DOCTYPE x [<!ENTITY e SYSTEM "file://{secret_file}">]>', "&e;"
    else:
        levels = [f'<!ENTITY e0 "{"lol" * 10}">']
        levels += [f'<!ENTITY e{i} "{f"&e{i - 1};" * 10}">' for i in range(1, 10)]
        dtd, ref = f"<!DOCTYPE x [{''.join(levels)}]>", "&e9;"

    def change(data: bytes) -> bytes:
        text = data.decode("utf-8")
        decl = re.match(r"<\?xml[^>]*\?>", text)
        at = decl.end() if decl else 0
        text = text[:at] + dtd + text[at:]
        if '<c r="B1"' in text:  # the η cell: its value is echoed in a finding
            text = re.sub(
                r'(<c r="B1"[^>]*>.*?<v>)[^<]*(</v>)', rf"\1{ref}\2", text, count=1, flags=re.S
            )
        elif "<t>" in text or "<t " in text:  # a shared string
            text = re.sub(r"(<t(?: [^>]*)?>)[^<]*(</t>)", rf"\1{ref}\2", text, count=1)
        else:  # text inside the root element
            root = re.search(r"<[A-Za-z][^>]*>", text[at + len(dtd) :])
            end = at + len(dtd) + root.end()
            text = text[:end] + ref + text[end:]
        return text.encode("utf-8")

    return change


# --- XML: no DTD, no entity, no local file ------------------------------------------------


@pytest.mark.parametrize("kind", ["xxe", "laughs"])
@pytest.mark.parametrize("where", ["sheet", "workbook", "rels", "strings"])
def test_doctype_is_refused_and_nothing_is_read(
    kind: str, where: str, seed_recalculated: Path, tmp_path: Path
) -> None:
    secret_file = tmp_path / "hostname"
    secret_file.write_text(SECRET + "\n")
    part = {
        "sheet": sheet_part(seed_recalculated, SHEET),
        "workbook": "xl/workbook.xml",
        "rels": "xl/_rels/workbook.xml.rels",
        "strings": "xl/sharedStrings.xml",
    }[where]
    with zipfile.ZipFile(seed_recalculated) as z:
        assert part in z.NameToInfo, f"LibreOffice wrote no {part}"
    change = doctype_case(kind, secret_file)
    bad = rewrite(
        seed_recalculated, tmp_path / "bad.xlsx", lambda n, d: change(d) if n == part else d
    )
    start = time.monotonic()
    for args in ((bad,), (bad, "--json")):
        code, out, err = run(*args)
        assert SECRET not in out + err
        assert code == 2, (code, out[-500:], err)
        assert "DOCTYPE" in out + err
    assert time.monotonic() - start < QUICK


def test_prolog_check_refuses_what_could_hide_a_doctype() -> None:
    check_prolog(b'<?xml version="1.0"?>\n<!-- a comment --><?pi x?><worksheet/>', "p")
    check_prolog("\ufeff<worksheet/>".encode("utf-16-le"), "p")
    bad = [
        b'<?xml version="1.0"?><!DOCTYPE x SYSTEM "file:///etc/hostname"><x/>',
        b"<!-- <x/> --><!DOCTYPE x><x/>",
        "<!DOCTYPE x><x/>".encode("utf-16"),  # with its byte-order mark
        b'<?xml version="1.0" encoding="UTF-7"?>+ADw-!DOCTYPE x+AD4-<x/>',
        b"\x00<\x00!\x00D\x00O\x00C",  # UTF-16 without a byte-order mark
    ]
    for head in bad:
        with pytest.raises(BpxlError, match=r"DOCTYPE|encoding|not XML"):
            check_prolog(head, "p")


# --- zip parts that inflate ---------------------------------------------------------------


def zero_part(src: Path, dst: Path, name: str, size: int = 1 << 30) -> Path:
    """`src` with part `name` replaced by `size` zero bytes, deflated (about 1/1000 on disk)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            if item.filename != name:
                zout.writestr(item, zin.read(item))
                continue
            with zout.open(name, "w") as fh:
                chunk = bytes(1 << 20)
                for _ in range(size >> 20):
                    fh.write(chunk)
    return dst


def lie_about_size(path: Path, name: str, size: int) -> None:
    """Patch the central directory so that part `name` claims to inflate to `size` bytes."""
    data = bytearray(path.read_bytes())
    at = 0
    while (at := data.find(b"PK\x01\x02", at)) >= 0:
        name_len = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46 : at + 46 + name_len] == name.encode():
            struct.pack_into("<I", data, at + 24, size)
            path.write_bytes(bytes(data))
            return
        at += 4
    raise AssertionError(f"{name} not in the central directory")


@pytest.fixture(scope="module")
def gigabyte_of_zeros(seed_built: Path) -> Path:
    """The LR sheet's part replaced by 1 GiB of zeros: about 1 MB on disk."""
    out = zero_part(seed_built, seed_built.with_name("zeros.xlsx"), sheet_part(seed_built, SHEET))
    assert out.stat().st_size < 8 << 20
    return out


@pytest.mark.slow
def test_gigabyte_part_is_refused_quickly(gigabyte_of_zeros: Path, tmp_path: Path) -> None:
    start = time.monotonic()
    code, out, err = run(gigabyte_of_zeros)
    assert time.monotonic() - start < QUICK
    assert_one_line_error(code, out, err, "1,073,741,824 bytes uncompressed")
    code, out, _ = run(gigabyte_of_zeros, "--json")
    assert code == 2 and "1,073,741,824 bytes" in json.loads(out)["error"]
    # the header says 100 kB, the data inflates to 1 GiB: reading stops at what was counted
    liar = tmp_path / "liar.xlsx"
    liar.write_bytes(gigabyte_of_zeros.read_bytes())
    lie_about_size(liar, sheet_part(gigabyte_of_zeros, SHEET), 100_000)
    start = time.monotonic()
    code, out, err = run(liar)
    assert time.monotonic() - start < QUICK
    assert_one_line_error(code, out, err, "cannot read")


def set_method(path: Path, name: str, method: int) -> None:
    """Patch the central directory: part `name` says it is compressed with `method`."""
    data = bytearray(path.read_bytes())
    at = 0
    while (at := data.find(b"PK\x01\x02", at)) >= 0:
        name_len = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46 : at + 46 + name_len] == name.encode():
            struct.pack_into("<H", data, at + 10, method)
            path.write_bytes(bytes(data))
            return
        at += 4
    raise AssertionError(f"{name} not in the central directory")


@pytest.mark.parametrize("method", [99, 97])  # AES encryption, WavPack: zipfile reads neither
def test_part_zipfile_cannot_read_is_one_line(
    method: int, seed_built: Path, tmp_path: Path
) -> None:
    odd = tmp_path / "odd.xlsx"
    odd.write_bytes(seed_built.read_bytes())
    set_method(odd, sheet_part(seed_built, SHEET), method)
    code, out, err = run(odd)
    assert_one_line_error(code, out, err, "damaged")


# --- numbers a file can make huge ---------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda x: x.replace('<row r="60"', '<row r="2000000000"', 1), "row 2,000,000,000 is past"),
        (lambda x: re.sub(r'<row r="(\d+)"', '<row r="1e9"', x, count=1), "is not a number"),
        (lambda x: x.replace('<c r="A10"', '<c r="A10000000000"', 1), "is not a cell"),
        (lambda x: x.replace('<c r="B10"', '<c r="XFE10"', 1), "is not a cell"),
    ],
)
def test_row_and_column_numbers_are_bounded(
    edit: Callable[[str], str], message: str, seed_recalculated: Path, tmp_path: Path
) -> None:
    bad = edit_sheet(seed_recalculated, tmp_path / "rows.xlsx", SHEET, edit)
    code, out, err = run(bad)
    assert_one_line_error(code, out, err, message)


def test_a_far_row_costs_no_memory(seed_recalculated: Path, tmp_path: Path) -> None:
    """One real row numbered 1,048,576 (Excel's last): memory follows the cells, not the number."""
    bad = edit_sheet(
        seed_recalculated,
        tmp_path / "far.xlsx",
        SHEET,
        lambda x: x.replace(
            "</sheetData>", '<row r="1048576"><c r="A1048576"><v>1</v></c></row></sheetData>', 1
        ),
    )
    code, out, err, rss = run_measured(bad)
    assert code == 1, (out, err)
    assert f"{WHERE}A{STEPS + 5}" in out and "rows must be contiguous" in out
    assert rss < 400 << 20, f"{rss >> 20} MB"


def run_measured(*args: object) -> tuple[int, str, str, int]:
    """`bpxl verify` in a fresh interpreter: exit code, output, and its peak RSS in bytes."""
    script = (
        "import resource, runpy, sys\n"
        "sys.argv = ['bpxl', 'verify', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('backprop_xlsx', run_name='__main__')\n"
        "except SystemExit as e:\n    code = e.code\n"
        "else:\n    code = 0\n"
        # VmHWM: the peak of this program's own memory; ru_maxrss would also count the pytest
        # process it was forked from (Linux keeps the larger across fork and exec)
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n    status = open('/proc/self/status').read()\n"
        "    peak = int(status.split('VmHWM:')[1].split()[0])\n"
        "except (OSError, IndexError):\n    pass\n"
        "print('RSS', peak, file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    err, _, rss = proc.stderr.rpartition("RSS ")
    return proc.returncode, proc.stdout, err, int(rss) * 1024


# --- cell text ----------------------------------------------------------------------------


def pad_value(blanks: int) -> Callable[[str], str]:
    return lambda xml: re.sub(
        r'(<c r="M41"[^>]*>.*?<v>)([^<]*)(</v>)',
        lambda m: m[1] + m[2] + " " * blanks + m[3],
        xml,
        count=1,
        flags=re.S,
    )


def test_value_padded_past_a_cells_length_is_refused(
    seed_recalculated: Path, tmp_path: Path
) -> None:
    bad = edit_sheet(seed_recalculated, tmp_path / "padded.xlsx", SHEET, pad_value(100_000))
    code, out, err, rss = run_measured(bad)
    assert_one_line_error(code, out, err, "100,0", "32,767")
    assert rss < 400 << 20, f"{rss >> 20} MB"


def test_padded_value_within_the_bound_costs_no_memory(
    seed_recalculated: Path, tmp_path: Path
) -> None:
    """30,000 blanks after a number: still the number (as Excel reads it), in a few kB."""
    padded = edit_sheet(seed_recalculated, tmp_path / "padded.xlsx", SHEET, pad_value(30_000))
    code, out, err, rss = run_measured(padded)
    assert code == 0, (out, err)
    assert rss < 250 << 20, f"{rss >> 20} MB"  # the old reader took ~500 MB here


# --- formulas: long, deep, odd numbers, quotes --------------------------------------------


def hostile_formulas() -> list[tuple[str, str, str]]:
    return [
        ("nesting", "(0+" * 150 + "0" + ")" * 150, f"nested more than {MAX_NESTING} levels"),
        ("minus", "-" * 300 + "1", f"nested more than {MAX_NESTING} levels"),
        ("inf", "1E+400", "the number 1E+400 is out of range"),
        ("quotes-odd", '"' * 8_191, "a string that does not end"),
        ("sheet-quotes", "'" * 8_000, "quoted sheet name"),
        ("long", "+".join(["1"] * 5000), "longer than 8,192 characters"),
    ]


def set_column_formula(column: str, formula: str) -> Callable[[str], str]:
    """Every cell of a column holds `formula`: the column's one formula is the hostile one."""
    return lambda xml: functools.reduce(
        lambda x, row: set_formula(f"{column}{row}", formula)(x), range(4, 5 + STEPS), xml
    )


@pytest.mark.parametrize(("case", "formula", "message"), hostile_formulas())
def test_hostile_formula_is_a_finding(
    case: str, formula: str, message: str, seed_recalculated: Path, tmp_path: Path
) -> None:
    bad = edit_sheet(
        seed_recalculated, tmp_path / f"{case}.xlsx", SHEET, set_column_formula("U", formula)
    )
    start = time.monotonic()
    code, out, err = run(bad)
    assert time.monotonic() - start < QUICK
    assert code == 1, (code, out[-2000:], err)
    assert err == "" and "Traceback" not in out
    line = next(x for x in out.splitlines() if x.startswith(f"  {WHERE}U5: formula not supported"))
    assert message in line, line
    assert all(len(line) < 1000 for line in out.splitlines())


def test_one_cell_of_50000_quotes_is_refused_quickly(
    seed_recalculated: Path, tmp_path: Path
) -> None:
    """The old tokenizer took 37 s on this cell; it is longer than a cell can be anyway."""
    bad = edit_sheet(
        seed_recalculated, tmp_path / "quotes.xlsx", SHEET, set_formula("U41", "'" * 50_000)
    )
    start = time.monotonic()
    code, out, err = run(bad)
    assert time.monotonic() - start < QUICK
    assert_one_line_error(code, out, err, "U41 holds 50,000 characters")


@pytest.mark.parametrize(("case", "formula", "message"), hostile_formulas()[:6])
def test_compiler_bounds_are_unsupported_not_crashes(case: str, formula: str, message: str) -> None:
    start = time.monotonic()
    with pytest.raises(Unsupported, match=re.escape(message)):
        compile_formula(tokenize(formula, 5, 1, SHEET, {}), 5, 1, False, layout.SEED_LAYOUT)
    assert time.monotonic() - start < 5


def test_tokenizing_is_linear() -> None:
    """8 times the quotes, about 8 times the time (the old tokenizer was quadratic on single
    quotes, which start a sheet name: 64 times, 0.9 s for 8,000)."""

    def cost(n: int) -> float:
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            with contextlib.suppress(Unsupported):
                tokenize("'" * n, 5, 1, SHEET, {})
            best = min(best, time.perf_counter() - start)
        return best

    assert cost(8000) < 24 * cost(1000) + 0.01


def test_division_by_zero_is_a_number_not_a_crash() -> None:
    expr, _ = compile_formula(
        tokenize("1/0-(-8)^(1/3)", 5, 1, SHEET, {}), 5, 1, False, layout.SEED_LAYOUT
    )
    with np.errstate(all="ignore"):
        value = expr({})
    assert np.isnan(value) or np.isinf(value)


# --- what the report echoes ---------------------------------------------------------------

BIDI = "\u202e"


def test_formula_text_is_escaped_in_the_report(seed_recalculated: Path, tmp_path: Path) -> None:
    spoof = f'0.5*(A41-R41)^2+0*LEN("x\n{BIDI}y")+\u2066'  # in a string, and outside one
    bad = edit_sheet(seed_recalculated, tmp_path / "bidi.xlsx", SHEET, set_formula("U41", spoof))
    code, out, err = run(bad)
    assert code == 1 and err == ""
    line = next(x for x in out.splitlines() if f"{WHERE}U41" in x)
    assert "found =" in line and "\\u202e" in line and "\\n" in line
    assert BIDI not in out and "\u2066" not in out
    code, out, _ = run(bad, "--json")
    assert code == 1
    data = json.loads(out)
    texts = [f["found_formula"] or "" for f in data["findings"]]
    assert any("\\u202e" in t for t in texts)
    assert not any(BIDI in t or "\n" in t for t in texts)


# --- exit codes: 0 correct, 1 wrong, 2 cannot be checked; one line --------------------------


def test_exit_codes(seed_recalculated: Path, tmp_path: Path) -> None:
    assert run(seed_recalculated)[0] == 0
    wrong = edit_sheet(
        seed_recalculated, tmp_path / "sum.xlsx", SHEET, set_formula("U41", "SUM(A41:B41)")
    )
    code, out, err = run(wrong)
    assert code == 1 and err == "" and f"{WHERE}U41" in out
    # the old compiler ran 1/0 as Python: ZeroDivisionError; now a wrong value on changed inputs
    e1 = layout.SEED_LAYOUT.letter["E1"]
    wrong = edit_sheet(
        seed_recalculated, tmp_path / "div.xlsx", SHEET, set_column_formula(e1, "1/0")
    )
    code, out, err = run(wrong)
    assert code == 1 and err == "" and f"{WHERE}{e1}5: formula gives a wrong E1" in out
    code, out, err = run(tmp_path / "missing.xlsx")
    assert_one_line_error(code, out, err, "no such file")


def test_json_reports_errors_as_json(tmp_path: Path) -> None:
    code, out, err = run(tmp_path / "missing.xlsx", "--json")
    assert code == 2
    data = json.loads(out)
    assert data["ok"] is False and "no such file" in data["error"]
    assert data["path"].endswith("missing.xlsx")
    assert err == ""


def test_internal_error_is_one_line(
    seed_recalculated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in bpxl itself (simulated) still ends in one line and exit 2, not a traceback."""
    import backprop_xlsx.verify.workbook as verify

    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(verify, "verify_package", broken)  # what the command calls
    code, out, err = run(seed_recalculated)
    assert_one_line_error(
        code, out, err, "internal error: ZeroDivisionError: float division by zero"
    )
    code, out, _ = run(seed_recalculated, "--json")
    assert code == 2 and "internal error" in json.loads(out)["error"]


def test_help_documents_exit_codes() -> None:
    result = CliRunner().invoke(cli, ["verify", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "0" in text and "exit" in text.lower()
    assert re.search(r"1\W+(the )?workbook is wrong", text), text
    assert re.search(r"2\W+(it )?cannot be checked", text), text


# --- the text reader reads what lxml reads, or leaves the sheet to lxml ----------------------


def grid_rows(path: Path, title: str = SHEET, width: int = 31) -> tuple[list, bool]:
    """Package.grid's rows of the LR sheet (after its last "start again"), and whether it
    started again."""
    pkg = Package(path)
    try:
        rows = list(pkg.grid(title, width))
    finally:
        pkg.close()
    again = None in rows
    if again:
        rows = rows[len(rows) - rows[::-1].index(None) :]
    return [
        (r.row, list(r.formulas), list(r.values), list(r.types or ["n"] * width)) for r in rows
    ], again


def lxml_rows(path: Path, title: str = SHEET, width: int = 31) -> list:
    pkg = Package(path)
    try:
        shared: dict = {}
        rows = [pkg._grid_row(el, row, title, width, shared) for row, el in pkg._sheet(title)]
    finally:
        pkg.close()
    return [(r.row, list(r.formulas), list(r.values), list(r.types or ["n"] * width)) for r in rows]


FAKE_ROW = '<row r="4"><c r="A4"><f>666</f><v>666</v></c></row>'


@pytest.mark.parametrize(
    ("case", "edit", "again"),
    [
        ("as saved", None, False),
        ("fake rows in a comment", lambda x: x.replace("<sheetData>",
            f"<!-- <sheetData>{FAKE_ROW}</sheetData> --><sheetData>", 1), True),
        ("a row end in a comment", lambda x: re.sub(r'(<row r="41"[^>]*>)',
            r'\1<!-- </row><row r="42"> -->', x, count=1), True),
        ("a comment between rows", lambda x: x.replace('<row r="41"', '<!-- x --><row r="41"', 1),
            True),
        ("CDATA in a formula", lambda x: re.sub(r'(<c r="U41"[^>]*><f[^>]*>)([^<]*)',
            r"\1<![CDATA[\2]]>", x, count=1), False),
        ("entities", lambda x: re.sub(r'(<c r="U41"[^>]*><f[^>]*>)([^<]*)',
            r"\1\2+0*LEN(&quot;&lt;&amp;&gt;&apos;&quot;)", x, count=1), False),
        ("a character reference", lambda x: re.sub(r'(<c r="U41"[^>]*>.*?<v>)([^<]*)',
            r"\1&#48;\2", x, count=1, flags=re.S), False),
        ("a namespace redefined", lambda x: x.replace('<row r="41"',
            '<row xmlns="urn:other" r="41"', 1), True),
    ],
)  # fmt: skip
def test_text_reader_reads_as_lxml(
    case: str,
    edit: Callable[[str], str] | None,
    again: bool,
    seed_recalculated: Path,
    tmp_path: Path,
) -> None:
    path = (
        seed_recalculated
        if edit is None
        else edit_sheet(seed_recalculated, tmp_path / "e.xlsx", SHEET, edit)
    )
    rows, started_again = grid_rows(path)
    assert rows == lxml_rows(path)
    assert started_again == again
    assert rows[0][0] == 1 and len(rows) == STEPS + 4 - (case == "a namespace redefined")


def test_text_reader_reads_error_vs_lr_as_lxml(seed_recalculated: Path) -> None:
    """Its table's rows (a typed-in iteration number, then formulas) are read as text too."""
    rows, again = grid_rows(seed_recalculated, "Error vs LR", 3)
    assert rows == lxml_rows(seed_recalculated, "Error vs LR", 3) and not again
    pkg = Package(seed_recalculated)
    try:
        plain = sum(line.types is None for line in pkg.grid("Error vs LR", 3))
    finally:
        pkg.close()
    assert plain > STEPS
