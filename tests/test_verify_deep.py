"""The changed-input formula check on deep and wide networks: no false alarms, every spoil named.

A correct workbook of any network within the bounds passes (values stay bounded on the random
inputs, and rounding is judged by each formula's own error bound); a formula that reads the
wrong row, weight or activation in a three-layer net is named by its cell.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from _sheets import formula_findings
from _spoil import edit_column

from backprop_xlsx.mlp import description, layout
from backprop_xlsx.mlp.workbook import build_workbook
from backprop_xlsx.report import Report
from backprop_xlsx.verify.lr_formulas import compile_formula
from backprop_xlsx.verify.lr_values import within
from backprop_xlsx.verify.rounding import BOUNDED, close, exact_inputs
from backprop_xlsx.verify.workbook import verify_workbook
from backprop_xlsx.xlsx.formula import tokenize

ETA = 0.01
TITLE = layout.lr_sheet_title(ETA)
STEPS = 2


def _network(layers: list[int], activations: list[str], loss: str, samples: int, seed: int):
    """A network file's contents: random inputs in [-1, 1], targets the output can reach."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (samples, layers[0]))
    n_out = layers[-1]
    if activations[-1] == "softmax":
        t = np.eye(n_out)[rng.integers(0, n_out, samples)]
    else:
        t = np.tanh(x @ rng.uniform(-1, 1, (layers[0], n_out)))
    return description.from_mapping(
        {
            "layers": layers,
            "activations": activations,
            "loss": loss,
            "bias": True,
            "inputs": x.tolist(),
            "targets": t.tolist(),
            "seed": seed,
        }
    )


NETS = {
    "3-10-10-2 tanh/linear, 30 samples": ([3, 10, 10, 2], ["tanh", "tanh", "linear"], "mse", 30),
    "2-16-16-1 relu, 20 samples": ([2, 16, 16, 1], ["relu", "relu", "linear"], "mse", 20),
    "2-16-16-3 tanh/softmax, 6 samples": (  # three weight layers, the most bpxl builds
        [2, 16, 16, 3],
        ["tanh", "tanh", "softmax"],
        "cross_entropy",
        6,
    ),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, object]]:
    folder = tmp_path_factory.mktemp("deep")
    out = {}
    for k, (name, spec) in enumerate(NETS.items()):
        net = _network(*spec, seed=k + 1)
        path = folder / f"net{k}.xlsx"
        build_workbook(net, [ETA], STEPS, path)
        out[name] = (path, net)
    return out


@pytest.mark.parametrize(  # the nets with 20 and 30 samples take seconds: slow
    "name", [pytest.param(n, marks=[pytest.mark.slow] * (NETS[n][3] > 6)) for n in NETS]
)
def test_a_correct_deep_net_has_no_formula_findings(built, name: str) -> None:
    path, net = built[name]
    report = formula_findings(path, TITLE, layout.SheetLayout(net))
    assert report.ok, report.text()
    assert report.findings_total == 0


def _row_above(letter: str) -> Callable[[str, int], str]:
    """Every reference to column `letter` moved one row up: a reference off by one row."""
    return lambda f, row: re.sub(rf"\b{letter}{row}\b", f"{letter}{row - 1}", f)


def _other_column(own: str, other: str) -> Callable[[str, int], str]:
    return lambda f, row: re.sub(rf"\b{own}{row}\b", f"{other}{row}", f)


def _spoils(sheet: layout.SheetLayout) -> dict[str, tuple[str, Callable[[str, int], str], int]]:
    """spoil → (column key, edit, first row spoiled), in the middle of a three-layer net."""
    L = sheet.letter
    later = layout.FIRST_ROW + 1
    return {
        # δ of the first hidden layer reads δ of the second from the previous iteration
        "δ one row off": ("d_h1_s2", _row_above(L["d_k1_s2"]), later),
        # z of the second hidden layer reads its weight from the previous iteration
        "weight one row off": ("k1_s2", _row_above(L["w16"]), later),
        # z reads the wrong weight (w17, from the neuron's second input, for w16)
        "wrong weight": ("k1_s2", _other_column(L["w16"], L["w17"]), layout.FIRST_ROW),
        # a hidden activation written as the logistic function instead of tanh
        "wrong activation": (
            "a_k2_s1",
            lambda f, row: f.replace("TANH(", "1/(1+EXP(-") + ")",
            layout.FIRST_ROW,
        ),
        # an output error signal that reads another sample's target
        "another sample's target": (
            "d_o1_s2",
            _other_column(L["t1_s2"], L["t1_s3"]),
            layout.FIRST_ROW,
        ),
    }


@pytest.fixture(scope="module")
def three_layer(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, description.Network]:
    net = _network([3, 5, 4, 2], ["tanh", "tanh", "linear"], "mse", 4, seed=7)
    path = tmp_path_factory.mktemp("spoil") / "net.xlsx"
    build_workbook(net, [ETA], 3, path)
    return path, net


SPOILS = ["δ one row off", "weight one row off", "wrong weight", "wrong activation",
          "another sample's target"]  # fmt: skip


@pytest.mark.parametrize("spoil", SPOILS)
def test_a_spoiled_formula_in_a_three_layer_net_is_named(three_layer, spoil: str, tmp_path) -> None:
    path, net = three_layer
    sheet = layout.SheetLayout(net)
    key, edit, first = _spoils(sheet)[spoil]
    last = layout.last_row(3)
    spoiled = tmp_path / "spoiled.xlsx"
    cell = edit_column(path, spoiled, TITLE, sheet.letter[key], edit, lambda r: first <= r <= last)
    report = formula_findings(spoiled, TITLE, layout.SheetLayout(net))
    assert not report.ok
    named = [f for f in report.findings if f.cell == cell]
    assert named and all("changed inputs" in f.problem for f in named), report.text()
    letter = sheet.letter[key]  # the spoiled column alone is blamed (its first row may be too)
    assert all(re.fullmatch(rf"{letter}\d+", f.cell) for f in report.findings), report.text()


# ---------------------------------------------------------------------------------------------
# The rounding bound itself, against exact rational arithmetic


def _exact(formula: str, values: dict[str, Fraction]) -> Fraction:
    """A formula of + - * and cell names, evaluated in exact rationals (Python's precedence is
    Excel's for these operators)."""
    return eval(formula, {}, values)  # our own test formulas, not a file's text


@pytest.mark.parametrize(
    "formula",
    [
        "A5*B5+C5*D5+E5*F5+G5*H5",  # a dot product, as z and ∂E/∂w
        "(A5*B5+C5*D5-E5)*(1-F5*F5)",  # a hidden δ with tanh′
        "A5-B5*C5",  # a weight update
        "A5*B5*C5-D5*E5+F5-G5-H5",
    ],
)
def test_the_bound_holds_and_is_tight_against_exact_arithmetic(formula: str) -> None:
    rng = np.random.default_rng(3)
    n = 2000
    letters = "ABCDEFGH"
    # terms of very different sizes that cancel: the case a fixed relative tolerance gets wrong
    cur = {c: rng.standard_normal(n) * 10.0 ** rng.integers(-3, 7, n) for c in letters}
    sheet = layout.SEED_LAYOUT
    keys = {c: sheet.columns[k].key for k, c in enumerate(letters)}
    tokens = tokenize(formula, 5, 30, "LR 1", {})
    expr, _ = compile_formula(tokens, 5, 30, False, sheet, BOUNDED)
    got = expr({"cur": exact_inputs({keys[c]: cur[c] for c in letters})})
    exact = [
        _exact(formula, {f"{c}5": Fraction(float(cur[c][i])) for c in letters}) for i in range(n)
    ]
    # a true bound: the computed value within e of the exact one, measured exactly
    assert all(abs(Fraction(float(got.v[i])) - exact[i]) <= got.e[i] for i in range(n))
    exact_doubles = np.array([float(x) for x in exact])
    assert np.all(close(got, exact_doubles))  # so the exact value is never a finding
    # and far below a real mistake: one operand changed by one part in 10⁹ is caught where it
    # moves the result by more than that part of the result's magnitude
    nudged = {c: (cur[c] * (1 + 1e-9) if c == "A" else cur[c]) for c in letters}
    wrong = expr({"cur": exact_inputs({keys[c]: nudged[c] for c in letters})})
    moved = np.abs(wrong.v - got.v) > 1e-12 * got.m
    assert moved.sum() > n // 4
    assert not np.any(close(wrong, exact_doubles)[moved])


# ---------------------------------------------------------------------------------------------
# The whole verify, with LibreOffice's values


@pytest.mark.slow
@pytest.mark.parametrize("name", list(NETS)[:2])
def test_deep_nets_build_recalculate_and_verify(built, name: str, soffice: str) -> None:
    path, _ = built[name]
    report = verify_workbook(path)
    assert report.ok, report.text()
    assert report.engine == "libreoffice"


CONVERGED = """
layers = [3, 4, 3]
activations = ["tanh", "softmax"]
loss = "cross_entropy"
bias = true
inputs = [[0.1, 0.2, 0.3], [0.5, 0.1, 0.2], [0.9, 0.1, 0.2], [0.1, 0.7, 0.2], [0.1, 0.2, 0.8],
          [0.3, 0.2, 0.1]]
targets = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]]
"""


@pytest.mark.slow
def test_a_gradient_near_a_minimum_is_no_value_finding(tmp_path: Path, soffice: str) -> None:
    """LibreOffice's ∂E/∂w8 at iteration 36 (η 0.5) is -4.70477214e-06, NumPy's -4.70477199e-06:
    1.5e-13 apart, a sum of terms near 1e-2 that cancel. A right workbook, once flagged."""
    config = tmp_path / "net.toml"
    config.write_text(CONVERGED, encoding="utf-8")
    out = tmp_path / "net.xlsx"
    build_workbook(description.load_network(config), [0.1, 0.5], 50, out, recalc=True)
    report = verify_workbook(out)  # the values LibreOffice computed and saved
    assert report.ok, report.text()


def test_the_value_tolerance_follows_the_column_not_the_cell() -> None:
    """A small value in a column of large ones gets the column's slack; alone, only its own."""
    report = Report("values")
    want = np.array([[1e-2], [4.70477199e-06]])
    found = want + np.array([[0.0], [1.5e-13]])
    scale = np.abs(want).max(axis=0)
    assert within(found, want, report, scale).all()
    assert not within(found, want, report)[1, 0]
    assert not within(want + 1e-9, want, report, scale)[1, 0]  # 1e-7 of it: still a finding


SATURATED_BCE = """
layers = [1, 2]
activations = ["sigmoid"]
loss = "binary_cross_entropy"
bias = false
inputs = [[1.0]]
targets = [[1.0, 0.3]]
weights = [35.0, -40.0]
"""


@pytest.mark.slow
def test_binary_cross_entropy_of_a_saturated_sigmoid_recalculates(
    tmp_path: Path, soffice: str
) -> None:
    """a = σ(35) is 1 − 6e-16: LibreOffice rounds 1 − a to 0, so E written through LN(1 − a)
    was #VALUE! there (NumPy: 6.7e-16). Written through z, as max(z, 0) − t·z + ln(1 + e^−|z|),
    it is finite in every engine and equal to NumPy's."""
    config = tmp_path / "net.toml"
    config.write_text(SATURATED_BCE, encoding="utf-8")
    out = tmp_path / "net.xlsx"
    build_workbook(description.load_network(config), [0.1], 3, out, recalc=True)
    report = verify_workbook(out)
    assert report.engine == "cached" and report.ok, report.text()


def test_binary_cross_entropy_through_z_is_the_textbook_formula() -> None:
    """−(t·ln a + (1 − t)·ln(1 − a)) and the form through z agree wherever a < 1 keeps digits."""
    from backprop_xlsx.mlp import network

    z = np.linspace(-20, 20, 81)[:, None]
    t = np.linspace(0, 1, 5)[None, :]
    a = network.sigmoid(z)
    textbook = -(t * np.log(a) + (1 - t) * np.log(1 - a))
    through_z = network.error_terms("binary_cross_entropy", z, a, t)
    np.testing.assert_allclose(through_z, textbook, rtol=1e-7)
