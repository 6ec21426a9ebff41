"""`bpxl build`: the workbook's structure, its values as real LibreOffice computes them, the CLI.

LibreOffice takes seconds a run, so the module shares two: one `bpxl build --recalc` of the
default workbook and, at the same time, a recalculation of a copy whose Setup t1 was changed.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import openpyxl
import pytest
from _seed import seed, seed_values
from click.testing import CliRunner

from backprop_xlsx.cli import DEFAULT_LRS, cli
from backprop_xlsx.mlp import layout, summary_layout
from backprop_xlsx.mlp import workbook as writer
from backprop_xlsx.mlp.network import PARAMS
from backprop_xlsx.mlp.workbook import build_workbook
from backprop_xlsx.xlsx.libreoffice import recalculate

STEPS = 100
ETAS = list(DEFAULT_LRS)
REL = 1e-12  # LibreOffice stores 15 significant digits; cancellation costs ~2 more (see report)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    assert not isinstance(result.exception, AssertionError), result.exception
    return result.exit_code, result.stdout, result.stderr


def lr_values(wb: openpyxl.Workbook, eta: float, steps: int) -> np.ndarray:
    """The computed cells of one LR sheet as an (iterations, columns) float array."""
    ws = wb[layout.lr_sheet_title(eta)]
    rows = ws.iter_rows(
        min_row=layout.FIRST_ROW,
        max_row=layout.last_row(steps),
        max_col=len(layout.SEED_LAYOUT.columns),
        values_only=True,
    )
    return np.array(list(rows), dtype=np.float64)


def train(start: dict[str, float], etas: list[float], steps: int) -> dict[str, np.ndarray]:
    """NumPy's value of every column of the seed's LR sheets: key → (steps + 1, len(etas))."""
    net = seed(start)
    sheet = layout.SheetLayout(net)
    return sheet.run({e.key: e.value for e in sheet.setup}, np.asarray(etas, np.float64), steps)


def max_relative_error(wb: openpyxl.Workbook, start: dict[str, float]) -> float:
    """Largest |sheet − NumPy| / |NumPy| over every computed cell of every LR sheet."""
    history = train(start, ETAS, STEPS)
    history[layout.ITERATION] = np.repeat(np.arange(STEPS + 1.0)[:, None], len(ETAS), axis=1)
    worst = 0.0
    for j, eta in enumerate(ETAS):
        found = lr_values(wb, eta, STEPS)
        expected = np.stack([history[c.key][:, j] for c in layout.SEED_LAYOUT.columns], axis=1)
        assert found.shape == expected.shape
        diff = np.abs(found - expected)
        scale = np.abs(expected)
        assert np.all((diff == 0) | (scale > 0)), f"LR {eta}: nonzero where NumPy has exactly 0"
        worst = max(
            worst, float(np.max(np.where(diff == 0, 0.0, diff / np.maximum(scale, 1e-300))))
        )
    return worst


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default workbook (6 learning rates × 100 steps), as the writer leaves it."""
    out = tmp_path_factory.mktemp("built") / "backprop.xlsx"
    line = build_workbook(seed(), ETAS, STEPS, out)
    assert line.startswith(f"wrote {out}: 6 learning-rate sheets × 101 iterations, 19,392 formulas")
    return out


@pytest.fixture(scope="module")
def book(built: Path) -> openpyxl.Workbook:
    return openpyxl.load_workbook(built)


@pytest.fixture(scope="module")
def recalculated(
    soffice: str, built: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Two real LibreOffice runs at once: `bpxl build --recalc`, and the t1 = 0.3 copy."""
    folder = tmp_path_factory.mktemp("recalc")
    changed = folder / "t1.xlsx"
    wb = openpyxl.load_workbook(built)
    wb[layout.SETUP_SHEET][f"{layout.SETUP_VALUE_COLUMN}{layout.SEED_LAYOUT.setup_row['t1']}"] = 0.3
    wb.save(changed)
    with ThreadPoolExecutor(1) as pool:
        live = pool.submit(recalculate, changed, folder / "t1-recalculated.xlsx")
        out = folder / "recalc.xlsx"
        code, stdout, stderr = run("build", "--recalc", "--out", str(out))
        assert code == 0, stderr
        assert "values computed by LibreOffice" in stdout
        return {"recalc": out, "live": live.result()}


@pytest.fixture(scope="module")
def values(recalculated: dict[str, Path]) -> openpyxl.Workbook:
    return openpyxl.load_workbook(recalculated["recalc"], data_only=True)


# --- structure --------------------------------------------------------------------------------


def test_sheets_header_and_every_formula(book: openpyxl.Workbook) -> None:
    titles = [layout.lr_sheet_title(eta) for eta in ETAS]
    assert book.sheetnames == [layout.SETUP_SHEET, *titles, layout.SUMMARY_SHEET]
    assert titles == ["LR 0.1", "LR 0.2", "LR 0.5", "LR 0.8", "LR 1", "LR 2"]
    for eta, title in zip(ETAS, titles, strict=True):
        ws = book[title]
        assert ws[layout.ETA_CELL].value == eta
        assert ws["A1"].value == "η"
        header = [c.value for c in ws[layout.HEADER_ROW]]
        assert header == [c.header for c in layout.SEED_LAYOUT.columns]
        assert ws.max_row == layout.last_row(STEPS) == layout.FIRST_ROW + STEPS
        assert ws.max_column == len(layout.SEED_LAYOUT.columns)
        assert ws.freeze_panes == "F4"  # the header, the iteration and t1 t2 i1 i2 in view
        for row in ws.iter_rows(min_row=layout.FIRST_ROW):
            for cell, column in zip(row, layout.SEED_LAYOUT.columns, strict=True):
                assert cell.value == column.formula(cell.row), cell.coordinate
                assert cell.number_format == column.number_format, cell.coordinate
        assert len(ws._charts) == 1
    assert book.calculation.fullCalcOnLoad


def test_setup_values_and_learning_rates(book: openpyxl.Workbook) -> None:
    ws = book[layout.SETUP_SHEET]
    start = seed_values()
    assert start["w1"] == 0.15  # templates/seed.toml
    for name in PARAMS:
        row = layout.SEED_LAYOUT.setup_row[name]
        assert ws[f"A{row}"].value == name
        assert ws[f"{layout.SETUP_VALUE_COLUMN}{row}"].value == start[name]
    texts = [str(c.value) for c in ws["A"] if isinstance(c.value, str)]
    assert "h1 = w1·i1 + w2·i2        a_h1 = σ(h1)" in texts
    assert any("(a_o1 − t1)·a_o1·(1 − a_o1)·a_h1" in t and "∂o1/∂w5" in t for t in texts)
    assert any(t.startswith("∂E/∂w1 = (δo1·w5 + δo2·w7)") for t in texts)
    assert any("w ← w − η·∂E/∂w" in t for t in texts)
    eta_col, sheet_col, final_col = layout.SETUP_LR_COLUMNS
    for j, eta in enumerate(ETAS):
        title, row = layout.lr_sheet_title(eta), layout.setup_lr_row(j)
        assert ws[f"{eta_col}{row}"].value == summary_layout.eta_ref(title)
        assert ws[f"{sheet_col}{row}"].value == title
        assert ws[f"{sheet_col}{row}"].hyperlink.location == f"{layout.sheet_ref(title)}!A1"
        assert ws[f"{final_col}{row}"].value == f"={layout.sheet_ref(title)}!$X${STEPS + 4}"


def test_summary_formulas(book: openpyxl.Workbook) -> None:
    ws = book[layout.SUMMARY_SHEET]
    s = summary_layout.SummaryLayout(len(ETAS), STEPS)
    cols = summary_layout.SUMMARY_COLUMNS
    assert ws[summary_layout.THRESHOLD_CELL].value == summary_layout.DEFAULT_THRESHOLD
    for j, eta in enumerate(ETAS):
        title, row = layout.lr_sheet_title(eta), s.lr_row(j)
        assert ws[f"{cols['eta']}{row}"].value == summary_layout.eta_ref(title)
        assert ws[f"{cols['sheet']}{row}"].hyperlink.location == f"'{title}'!A1"
        assert ws[f"{cols['final']}{row}"].value == summary_layout.final_e_total_ref(
            title, STEPS, "X"
        )
        first_below = ws[f"{cols['first_below']}{row}"].value
        assert first_below.text == s.first_below_formula(j)  # a CSE array formula
        assert ws.cell(s.table_header_row, j + 2).value == title
    assert ws.max_row == s.iteration_row(STEPS)
    for k in range(STEPS + 1):
        assert ws[f"A{s.iteration_row(k)}"].value == k
        for j, eta in enumerate(ETAS):
            cell = ws[f"{s.lr_column(j)}{s.iteration_row(k)}"]
            assert cell.value == summary_layout.e_total_ref(layout.lr_sheet_title(eta), k, "X")
    assert len(ws._charts) == 1 and len(ws._charts[0].series) == len(ETAS)


# --- values, computed by real LibreOffice -----------------------------------------------------


def test_libreoffice_values_equal_numpy(values: openpyxl.Workbook) -> None:
    worst = max_relative_error(values, seed_values())
    print(f"max relative error, LibreOffice vs NumPy: {worst:.2e}")
    assert worst <= REL


def test_summary_values_equal_numpy(values: openpyxl.Workbook) -> None:
    ws = values[layout.SUMMARY_SHEET]
    s = summary_layout.SummaryLayout(len(ETAS), STEPS)
    e_total = train(seed_values(), ETAS, STEPS)["E_total"]
    cols = summary_layout.SUMMARY_COLUMNS
    below = e_total < summary_layout.DEFAULT_THRESHOLD
    firsts = [
        int(np.argmax(below[:, j])) if below[:, j].any() else summary_layout.NEVER for j in range(6)
    ]
    assert firsts == [
        summary_layout.NEVER,
        summary_layout.NEVER,
        85,
        53,
        43,
        21,
    ]  # some never, some do
    for j, eta in enumerate(ETAS):
        row = s.lr_row(j)
        assert ws[f"{cols['eta']}{row}"].value == eta
        assert ws[f"{cols['final']}{row}"].value == pytest.approx(e_total[-1, j], rel=REL)
        assert ws[f"{cols['first_below']}{row}"].value == firsts[j]
        column = [ws[f"{s.lr_column(j)}{s.iteration_row(k)}"].value for k in range(STEPS + 1)]
        np.testing.assert_allclose(column, e_total[:, j], rtol=REL, atol=0)
    setup = values[layout.SETUP_SHEET]
    final = [setup[f"{layout.SETUP_LR_COLUMNS[2]}{layout.setup_lr_row(j)}"].value for j in range(6)]
    np.testing.assert_allclose(final, e_total[-1], rtol=REL, atol=0)


def test_recalc_keeps_formulas(recalculated: dict[str, Path]) -> None:
    wb = openpyxl.load_workbook(recalculated["recalc"])
    assert wb["LR 2"][f"X{layout.FIRST_ROW + 7}"].value == layout.SEED_LAYOUT.column[
        "E_total"
    ].formula(11)


def test_setup_is_live(recalculated: dict[str, Path]) -> None:
    wb = openpyxl.load_workbook(recalculated["live"], data_only=True)
    start = seed_values() | {"t1": 0.3}
    assert (
        lr_values(wb, 0.5, STEPS)[
            0, layout.SEED_LAYOUT.columns.index(layout.SEED_LAYOUT.column["t1"])
        ]
        == 0.3
    )
    assert max_relative_error(wb, start) <= REL


# --- the CLI ----------------------------------------------------------------------------------


def test_cli_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, stdout, stderr = run("build")
    assert code == 0, stderr
    assert stdout.startswith("wrote outputs/backprop.xlsx: 6 learning-rate sheets × 101 iter")
    wb = openpyxl.load_workbook(tmp_path / "outputs" / "backprop.xlsx", read_only=True)
    assert wb.sheetnames[1:-1] == [layout.lr_sheet_title(eta) for eta in ETAS]


def test_cli_variadic_lr_steps_and_out(tmp_path: Path) -> None:
    out = tmp_path / "book.xlsx"
    code, stdout, stderr = run(
        "build", "--lr", "0.1", "0.2", "0.5", "0.8", "1", "2", "--out", str(out)
    )
    assert code == 0, stderr
    assert openpyxl.load_workbook(out, read_only=True).sheetnames[1:-1] == [
        "LR 0.1", "LR 0.2", "LR 0.5", "LR 0.8", "LR 1", "LR 2"
    ]  # fmt: skip
    code, stdout, stderr = run("build", "--lr", "0.5", "--steps", "3", "--out", str(out))
    assert code == 0, stderr
    assert stdout.startswith(f"wrote {out}: 1 learning-rate sheet × 4 iterations, 128 formulas")
    wb = openpyxl.load_workbook(out)
    assert wb.sheetnames == ["Setup", "LR 0.5", "Error vs LR"]
    assert wb["LR 0.5"].max_row == layout.FIRST_ROW + 3
    assert wb["LR 0.5"]["X7"].value == layout.SEED_LAYOUT.column["E_total"].formula(7)


def test_cli_config(tmp_path: Path) -> None:
    config = tmp_path / "net.toml"
    config.write_text("t1 = 0.01\nw5 = -0.4  # a comment\n")
    out = tmp_path / "book.xlsx"
    code, _, stderr = run("build", "--config", str(config), "--steps", "2", "--out", str(out))
    assert code == 0, stderr
    ws = openpyxl.load_workbook(out)[layout.SETUP_SHEET]
    expected = seed_values() | {"t1": 0.01, "w5": -0.4}
    got = {
        n: ws[f"{layout.SETUP_VALUE_COLUMN}{layout.SEED_LAYOUT.setup_row[n]}"].value for n in PARAMS
    }
    assert got == expected


def _unwritable_folder(tmp_path: Path) -> Path:
    if os.geteuid() == 0:  # root writes anywhere a mode allows; sysfs refuses new files
        return Path("/sys")
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o555)
    return folder


BAD = {
    "lr zero": ["--lr", "0"],
    "lr negative": ["--lr", "0.1", "-0.5"],
    "lr not a number": ["--lr", "abc"],
    "lr nan": ["--lr", "nan"],
    "lr missing value": ["--lr"],
    "lr missing value before option": ["--lr", "--steps", "3"],
    "lr duplicate": ["--lr", "0.5", "0.50"],
    "steps 0": ["--steps", "0"],
    "steps too many": ["--steps", "100001"],
    "steps not an integer": ["--steps", "2.5"],
    "config missing": ["--config", "{tmp}/nope.toml"],
    "config unreadable": ["--config", "{tmp}/binary.toml"],
    "config not toml": ["--config", "{tmp}/bad.toml"],
    "config unknown key": ["--config", "{tmp}/unknown.toml"],
    "config not a number": ["--config", "{tmp}/text.toml"],
    "lr overflows": ["--lr", "0.5", "1e308"],
    "out unwritable folder": ["--out", "{locked}/b.xlsx"],
    "out below a regular file": ["--out", "{tmp}/binary.toml/new/b.xlsx"],
    "out not xlsx": ["--out", "{tmp}/notes.xlsx"],
    "out not .xlsx": ["--out", "{tmp}/book.xls"],
    "out no suffix": ["--out", "{tmp}/book"],
    "out a folder": ["--out", "{tmp}/folder.xlsx"],
    "out a dangling symlink": ["--out", "{tmp}/dangling.xlsx"],
    "recalc without LibreOffice": ["--recalc", "--env", "BPXL_SOFFICE=/no/soffice"],
}


@pytest.mark.parametrize("args", BAD.values(), ids=BAD.keys())
def test_cli_bad_input(args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "binary.toml").write_bytes(b"\xff\xfe\x00 not utf-8")
    (tmp_path / "bad.toml").write_text("w1 = = 3\n")
    (tmp_path / "unknown.toml").write_text("w9 = 1.0\n")
    (tmp_path / "text.toml").write_text('w1 = "big"\n')
    notes = tmp_path / "notes.xlsx"
    notes.write_text("my notes, not a workbook\n")
    (tmp_path / "folder.xlsx").mkdir()
    (tmp_path / "dangling.xlsx").symlink_to(tmp_path / "gone.xlsx")
    existing = tmp_path / "existing.xlsx"
    build_workbook(seed(), [0.5], 2, existing)
    before = {p: p.read_bytes() for p in (existing, notes)}

    args = [a.format(tmp=tmp_path, locked=_unwritable_folder(tmp_path)) for a in args]
    if "--env" in args:
        monkeypatch.setenv(*args.pop(args.index("--env") + 1).split("="))
        args.remove("--env")
    if "--out" not in args:
        args += ["--out", str(existing)]
    code, stdout, stderr = run("build", *args)

    assert code != 0
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr + stdout
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".tmp") == []
    assert not (tmp_path / "binary.toml").is_dir() and not (tmp_path / "gone.xlsx").exists()


def test_log_axis_bounds_when_error_reaches_zero(tmp_path: Path, book: openpyxl.Workbook) -> None:
    """LibreOffice draws nothing on an auto-scaled log axis once E_total is exactly 0."""
    assert book[layout.SUMMARY_SHEET]._charts[0].y_axis.scaling.min is None  # auto: no zeros
    out = tmp_path / "zero.xlsx"
    build_workbook(seed(), [0.5, 10], 150, out)  # η = 10 reaches 0 at step 91
    assert train(seed_values(), [10], 150)["E_total"][91:].max() == 0
    wb = openpyxl.load_workbook(out)
    scaling = wb[layout.SUMMARY_SHEET]._charts[0].y_axis.scaling
    assert scaling.logBase == 10
    assert 0 < scaling.min <= 1e-30 and scaling.max == 0.1
    assert wb["LR 0.5"]._charts[0].y_axis.scaling.min is None


# --- what build accepts, it can finish ------------------------------------------------------


def test_overflow_is_refused_at_the_iteration_libreoffice_shows_num(
    soffice: str, tmp_path: Path
) -> None:
    """The named iteration is where real LibreOffice's values of the same workbook turn #NUM!."""
    out = tmp_path / "b.xlsx"
    code, _, stderr = run("build", "--lr", "1e308", "--steps", "3", "--out", str(out))
    assert code == 2 and not out.exists()
    found = re.fullmatch(r"error: learning rate 1e\+308 overflows at iteration (\d+): .*\n", stderr)
    assert found, stderr
    raw = tmp_path / "unchecked.xlsx"  # the workbook the check refuses, written anyway
    sheet = layout.SheetLayout(seed(seed_values()))
    with np.errstate(all="ignore"):
        values = sheet.run({e.key: e.value for e in sheet.setup}, np.array([1e308]), 3)
    writer.write_workbook([writer._Run(sheet, values)], [1e308], 3, raw)
    recalculate(raw, raw)
    ws = openpyxl.load_workbook(raw, data_only=True)[layout.lr_sheet_title(1e308)]
    errors = [
        k
        for k in range(4)
        if any(str(c.value).startswith("#") for c in ws[layout.row_of_iteration(k)])
    ]
    assert errors and errors[0] == int(found.group(1)) and errors == list(range(errors[0], 4))


def test_every_learning_rate_gets_its_own_short_sheet(tmp_path: Path) -> None:
    out = tmp_path / "b.xlsx"
    code, _, stderr = run(
        "build", "--lr", "0.1234567", "0.1234568", "--steps", "2", "--out", str(out)
    )
    assert code == 0, stderr
    wb = openpyxl.load_workbook(out, read_only=True)
    assert wb.sheetnames == ["Setup", "LR 0.1234567", "LR 0.1234568", "Error vs LR"]
    assert [layout.lr_sheet_title(e) for e in ETAS] == [
        "LR 0.1", "LR 0.2", "LR 0.5", "LR 0.8", "LR 1", "LR 2"
    ]  # fmt: skip
    rng = np.random.default_rng(6)
    etas = {
        *(10.0 ** rng.uniform(-323, 308, 3000)),
        *rng.uniform(0, 3, 3000),
        *np.nextafter(np.array(ETAS), np.inf),
        2.2250738585072014e-308, 1.7976931348623157e308, 5e-324, 0.1 + 0.2,
    }  # fmt: skip
    titles = {}
    for eta in etas:
        title = layout.lr_sheet_title(float(eta))
        assert len(title) <= layout.MAX_SHEET_TITLE == 31, title
        assert float(title[3:]) == eta and layout.is_bpxl_sheet(title)
        titles[title.casefold()] = eta
    assert len(titles) == len(etas)  # distinct learning rates, distinct sheets


@pytest.mark.parametrize("n", [1, 2, 6])
def test_error_vs_lr_prints_every_column_and_keeps_its_header_frozen(
    tmp_path: Path, n: int
) -> None:
    out = tmp_path / "b.xlsx"
    build_workbook(seed(), ETAS[:n], 60, out)
    ws = openpyxl.load_workbook(out)[layout.SUMMARY_SHEET]
    s = summary_layout.SummaryLayout(n, 60)
    areas = re.findall(r"\$([A-Z]+)\$(\d+):\$([A-Z]+)\$(\d+)", str(ws.print_area))
    table = next(a for a in areas if a[0] == "A")
    used = max(ws.max_column, len(summary_layout.SUMMARY_COLUMNS))  # D: first below threshold
    assert openpyxl.utils.column_index_from_string(table[2]) == used == max(n + 1, 4)
    assert ws.cell(s.lr_row(0), 4).value is not None  # column D is really used
    # Frozen up to the iteration table's header: it stays in view as the iterations scroll.
    assert ws.freeze_panes == f"A{s.iteration_row(0)}"
    assert ws.cell(s.table_header_row, 1).value == "iteration"
    # The chart is below the split, so it scrolls whole rather than being cut by it.
    assert ws._charts[0].anchor._from.row + 1 >= s.iteration_row(0)


def test_libreoffice_keeps_the_record_of_bpxl_sheets(recalculated: dict[str, Path]) -> None:
    """A workbook recalculated (saved) by LibreOffice still says which sheets bpxl made."""
    found = writer.existing_sheets(recalculated["recalc"])
    titles = [layout.SETUP_SHEET, *(layout.lr_sheet_title(e) for e in ETAS), layout.SUMMARY_SHEET]
    assert found is not None and not found.legacy
    assert (found.bpxl, found.user) == (titles, [])


def test_in_process_cli_gives_the_signal_handlers_back(tmp_path: Path) -> None:
    import signal

    before = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP))
    code, _, stderr = run("build", "--lr", "0.5", "--steps", "2", "--out", str(tmp_path / "b.xlsx"))
    assert code == 0, stderr
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)) == before
