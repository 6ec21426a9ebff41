"""Properties of any network a network file may describe, on networks hypothesis draws.

Within the file format's bounds (1-3 weight layers, widths 1-16, 1-50 samples, every activation
where it is allowed, every loss, every bias mode), for each drawn network:

* NumPy's backprop gives torch.autograd's E_total and every ∂E/∂W, ∂E/∂b (float64), and one
  gradient step gives torch.optim.SGD's parameters (a fixed bias stays put);
* `bpxl build` writes a workbook whose formulas `bpxl verify`'s formula checks accept;
* LibreOffice, recalculating that workbook, gets NumPy's value in every computed cell, and
  `bpxl verify` passes on its values (slow: LibreOffice starts once per example).

The structure is hypothesis's choice and shrinks; the numbers come from a NumPy generator seeded
by hypothesis (drawing thousands of floats one by one overruns hypothesis's data budget), so a
shrunk failure reads as a short `Case(...)`, kept below as an explicit example.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import openpyxl
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from backprop_xlsx import report
from backprop_xlsx.errors import BpxlError
from backprop_xlsx.mlp import description, layout, network
from backprop_xlsx.mlp.description import Network
from backprop_xlsx.mlp.workbook import build_workbook
from backprop_xlsx.verify import lr_formulas, lr_values, source
from backprop_xlsx.verify import workbook as verify
from backprop_xlsx.xlsx.read import Package

HIDDEN = ("sigmoid", "tanh", "relu", "linear")
OUTPUT = {  # loss → the output activations a network file allows with it
    "mse": HIDDEN,
    "cross_entropy": ("softmax",),
    "binary_cross_entropy": ("sigmoid",),
}
BIAS = (False, True, "fixed")  # the file's bias values: none, trained, fixed
MAX_WIDTH = 16
MAX_SAMPLES = 50


@dataclass(frozen=True)
class Case:
    """A network file in few words: its structure, and a seed for every number in it."""

    layers: tuple[int, ...]
    activations: tuple[str, ...]
    loss: str
    bias: bool | str
    samples: int
    seed: int = 0
    scale: float = 1.0  # weights uniform in ±scale; 3 saturates sigmoids, grows relu nets
    binary: bool = False  # inputs and targets of 0 and 1 only, as XOR's

    def file(self) -> dict[str, Any]:
        """The network file's contents (as parsed TOML), every number written out."""
        rng = np.random.default_rng(self.seed)
        S, n_in, n_out = self.samples, self.layers[0], self.layers[-1]
        if self.binary:
            inputs = rng.integers(0, 2, (S, n_in)).astype(float)
        else:
            inputs = rng.uniform(-2, 2, (S, n_in))
        if self.loss == "cross_entropy":
            if self.binary:
                targets = np.eye(n_out)[rng.integers(0, n_out, S)]
            else:
                targets = rng.dirichlet(np.ones(n_out), S)
                targets[:, -1] = 1 - targets[:, :-1].sum(axis=1)  # rows sum to 1 within 1e-16
        elif self.binary:
            targets = rng.integers(0, 2, (S, n_out)).astype(float)
        else:
            targets = rng.uniform(0, 1, (S, n_out))
        n_weights = sum(a * b for a, b in itertools.pairwise(self.layers))
        data: dict[str, Any] = {
            "layers": list(self.layers),
            "activations": list(self.activations),
            "loss": self.loss,
            "bias": self.bias,
            "inputs": inputs.tolist(),
            "targets": targets.tolist(),
            "weights": rng.uniform(-self.scale, self.scale, n_weights).tolist(),
        }
        if self.bias is not False:
            data["biases"] = rng.uniform(-1, 1, sum(self.layers[1:])).tolist()
        return data

    def network(self) -> Network:
        return description.from_mapping(self.file())


def columns(layers: list[int], samples: int) -> int:
    """Columns of an LR sheet (at most): per sample its inputs, targets, errors and z, a, δ of
    every neuron; w and ∂E/∂w of every weight, b and ∂E/∂b of every neuron; E_total."""
    neurons = sum(layers[1:])
    weights = sum(a * b for a, b in itertools.pairwise(layers))
    per_sample = layers[0] + 2 * layers[-1] + 3 * neurons
    return samples * per_sample + 2 * weights + 2 * neurons + 1


@st.composite
def cases(draw: st.DrawFn, max_columns: int | None = None) -> Case:
    """Any network a file may describe; with `max_columns`, fewer samples, then narrower
    layers, until an LR sheet has at most that many columns."""
    depth = draw(st.integers(1, 3))
    loss = draw(st.sampled_from(list(OUTPUT)))
    hidden = draw(st.lists(st.sampled_from(HIDDEN), min_size=depth - 1, max_size=depth - 1))
    output = draw(st.sampled_from(OUTPUT[loss]))
    layers = draw(st.lists(st.integers(1, MAX_WIDTH), min_size=depth + 1, max_size=depth + 1))
    narrowest = [1] * depth + [2 if output == "softmax" else 1]
    layers = [max(n, least) for n, least in zip(layers, narrowest, strict=True)]
    samples = draw(st.integers(1, MAX_SAMPLES))
    if max_columns is not None:
        while samples > 1 and columns(layers, samples) > max_columns:
            samples -= 1
        while columns(layers, samples) > max_columns:
            k = max(range(len(layers)), key=lambda k: layers[k] - narrowest[k])
            layers[k] -= 1
    return Case(
        layers=tuple(layers),
        activations=(*hidden, output),
        loss=loss,
        bias=draw(st.sampled_from(BIAS)),
        samples=samples,
        seed=draw(st.integers(0, 2**32 - 1)),
        scale=draw(st.sampled_from([1.0, 0.5, 2.0, 3.0])),
        binary=draw(st.booleans()),
    )


# ---------------------------------------------------------------------------------------------
# (a) NumPy's backprop is torch.autograd's


def torch_pass(nw: Network):  # type: ignore[no-untyped-def]
    """E_total and the leaf tensors W, b (with .grad), the loss written as the README defines it
    and differentiated by torch.autograd."""
    import torch

    functions = {
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "relu": torch.relu,
        "linear": lambda z: z,
        "softmax": lambda z: torch.softmax(z, dim=-1),
    }
    W = [torch.tensor(w, requires_grad=True) for w in nw.W]
    b = [None if v is None else torch.tensor(v, requires_grad=True) for v in nw.b]
    a = torch.tensor(nw.inputs)
    for W_l, b_l, f in zip(W, b, nw.net.activations, strict=True):
        z = a @ W_l.T + (0 if b_l is None else b_l)
        a = functions[f](z)
    t = torch.tensor(nw.targets)
    if nw.net.loss == "mse":
        terms = 0.5 * (t - a) ** 2
    elif nw.net.loss == "cross_entropy":
        terms = -t * torch.log(a)
    else:  # PyTorch's own, computed from z as bpxl does: finite where a rounds to 1
        terms = torch.nn.functional.binary_cross_entropy_with_logits(z, t, reduction="none")
    e_total = terms.sum()
    e_total.backward()
    return e_total, W, b


def assert_close(mine: np.ndarray, witness: np.ndarray, what: str) -> None:
    """Equal up to rounding: relative 1e-9, or 1e-12 of the array's largest entry (a gradient
    summed over samples can cancel to near 0, leaving only the rounding of its terms)."""
    scale = max(1.0, float(np.max(np.abs(witness), initial=0.0)))
    np.testing.assert_allclose(mine, witness, rtol=1e-9, atol=1e-12 * scale, err_msg=what)


def near_a_kink(nw: Network, run: network.Pass) -> bool:
    """Whether a ReLU input is within rounding of 0 without being 0: there f′ jumps, and NumPy
    and torch, summing in different orders, may fall on different sides of it."""
    for z, f in zip(run.z, nw.net.activations, strict=True):
        if f == "relu":
            scale = max(1.0, float(np.max(np.abs(z))))
            if np.any((z != 0) & (np.abs(z) < 1e-9 * scale)):
                return True
    return False


@pytest.mark.torch
@settings(max_examples=150)
@given(cases())
@example(Case((1, 1), ("linear",), "mse", False, 1))
@example(Case((2, 2), ("softmax",), "cross_entropy", "fixed", 3, binary=True))
def test_numpy_backprop_is_torch_autograd(case: Case) -> None:
    import torch

    nw = case.network()
    with np.errstate(all="ignore"):
        run = network.backprop(nw.net, nw.inputs, nw.targets, nw.W, nw.b)
    finite = [run.E_total, *run.dE_dW, *run.dE_db]
    # beyond float64 (e^z overflowing, ln 0): `bpxl build` refuses such a network, see below
    assume(all(np.isfinite(v).all() for v in finite))
    assume(not near_a_kink(nw, run))
    e_total, W, b = torch_pass(nw)
    assert_close(run.E_total, e_total.detach().numpy(), f"E_total of {case}")
    for layer in range(nw.net.depth):
        assert_close(run.dE_dW[layer], W[layer].grad.numpy(), f"∂E/∂W{layer + 1} of {case}")
        if b[layer] is not None:
            assert_close(run.dE_db[layer], b[layer].grad.numpy(), f"∂E/∂b{layer + 1} of {case}")

    # One step of full-batch gradient descent: torch.optim.SGD on the same gradients; a fixed
    # bias is a constant of the forward pass, not a parameter.
    eta = 0.3
    trained = [*W, *(v for v in b if v is not None and nw.bias == "trained")]
    torch.optim.SGD(trained, lr=eta).step()
    with np.errstate(all="ignore"):
        history = network.train_network(
            nw.net, nw.inputs, nw.targets, nw.W, nw.b, [eta], 1, train_bias=nw.bias == "trained"
        )
    for layer in range(nw.net.depth):
        assert_close(history.W[layer][1, 0], W[layer].detach().numpy(), f"W{layer + 1} step 1")
        if b[layer] is not None:
            after = b[layer].detach().numpy()
            assert_close(history.b[layer][1, 0], after, f"b{layer + 1} step 1")
            if nw.bias == "fixed":
                np.testing.assert_array_equal(after, nw.b[layer])


# ---------------------------------------------------------------------------------------------
# (b) what `bpxl build` writes, `bpxl verify`'s formula checks accept

# verify runs each column's formula on 64 input sets, ~2 ms a column on one core: the drawn
# workbooks stay at a few hundred columns (the file format allows ~11,000).
FORMULA_COLUMNS = 200


def build(case: Case, etas: list[float], steps: int, out: Path) -> Network:
    """Build the case's workbook; a learning rate that overflows is refused, and says so."""
    nw = case.network()
    try:
        build_workbook(nw, etas, steps, out)
    except BpxlError as exc:
        assert "overflows at iteration" in str(exc), str(exc)
        assume(False)  # refused before writing, as it must be; nothing to verify
    return nw


def formula_report(path: Path) -> report.Report:
    """What `bpxl verify` finds in the formulas alone: every LR sheet's structure (one relative
    formula down each column) and each column's formula on changed inputs. Its values need a
    spreadsheet engine; the LibreOffice property below checks them."""
    found = report.Report(str(path))
    rng = np.random.default_rng(report.INPUT_SEED)
    pkg = Package(path)
    try:
        titles = [t for t in pkg.parts if layout.is_bpxl_sheet(t) and t.startswith("LR ")]
        assert titles, f"no LR sheets in {path}"
        sheet_layout = lr_values.read_network(source.network_cells(pkg))
        for sheet in source.read_lr_sheets(pkg, titles, [sheet_layout] * len(titles)):
            lr_formulas.check_structure(sheet, found)
            lr_formulas.check_formulas(sheet, found, rng, pkg.titles)
    finally:
        pkg.close()
    return found


learning_rates = st.lists(
    st.sampled_from([0.01, 0.1, 0.5, 1.0, 2.5]) | st.floats(0.001, 3.0), min_size=1, max_size=2,
    unique=True,
)  # fmt: skip


@pytest.mark.slow  # 25 random nets built and verified: ~10 s
@settings(max_examples=25)
@given(case=cases(max_columns=FORMULA_COLUMNS), etas=learning_rates, steps=st.integers(3, 5))
@example(case=Case((2, 2, 2), ("sigmoid", "sigmoid"), "mse", False, 1), etas=[0.5], steps=3)
@example(  # x^2 compiled as numpy 1.24's np.power: 1 − a² of a saturated tanh, an ulp apart
    case=Case((1, 1, 1, 1), ("sigmoid", "tanh", "linear"), "mse", True, 3), etas=[0.01], steps=3
)
def test_built_formulas_pass_verify(
    case: Case, etas: list[float], steps: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    out = tmp_path_factory.mktemp("property") / "net.xlsx"
    build(case, etas, steps, out)
    report = formula_report(out)
    assert report.ok, f"{case} η={etas} steps={steps}\n{report.text()}"


REGRESSIONS = [  # shrunk examples that verify once flagged for a right formula (false alarms)
    (Case((2, 1, 2), ("relu", "softmax"), "cross_entropy", False, 5), [0.01]),  # inf = inf
    (
        Case(
            (14, 2, 6, 6), ("sigmoid", "relu", "softmax"), "cross_entropy", False, 1, 0, 0.5, True
        ),
        [0.1, 0.6217732912980947],
    ),  # NaN = NaN in 354 columns; with ReLU's IF(z>0, …, 0) also 0 where NaN was expected
    (
        Case((6, 2, 1, 4), ("tanh", "relu", "linear"), "mse", False, 3, 1, 0.5),
        [0.01],
    ),  # k1⁽³⁾ = BC5*AZ5+BD5*BB5: expected -57169550.9, found -57169536 (terms ~1e23 cancel)
]


@pytest.mark.parametrize(("case", "etas"), REGRESSIONS)
def test_diverging_changed_inputs_are_no_finding(
    case: Case, etas: list[float], tmp_path: Path
) -> None:
    build(case, etas, 3, tmp_path / "net.xlsx")
    report = formula_report(tmp_path / "net.xlsx")
    assert report.ok, report.text()


# ---------------------------------------------------------------------------------------------
# (c) LibreOffice computes what NumPy computes, and `bpxl verify` agrees

LIBREOFFICE_COLUMNS = 300


def recalculated_values(path: Path, sheet: layout.SheetLayout, title: str, steps: int):  # type: ignore[no-untyped-def]
    """Every computed column of one LR sheet as LibreOffice saved it: key → (steps + 1,)."""
    ws = openpyxl.load_workbook(path, data_only=True, read_only=True)[title]
    rows = list(
        ws.iter_rows(min_row=layout.FIRST_ROW, max_row=layout.FIRST_ROW + steps, values_only=True)
    )
    out = {}
    for key in sheet.keys:
        col = openpyxl.utils.column_index_from_string(sheet.letter[key]) - 1
        out[key] = np.array([row[col] for row in rows], dtype=np.float64)
    return out


@pytest.mark.slow
@settings(max_examples=5)
@given(case=cases(max_columns=LIBREOFFICE_COLUMNS), etas=learning_rates, steps=st.integers(3, 5))
@example(case=REGRESSIONS[1][0], etas=REGRESSIONS[1][1], steps=3)
def test_libreoffice_computes_what_numpy_computes(
    case: Case,
    etas: list[float],
    steps: int,
    soffice: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    out = tmp_path_factory.mktemp("property-lo") / "net.xlsx"
    nw = case.network()
    try:
        build_workbook(nw, etas, steps, out, recalc=True)
    except BpxlError as exc:
        assert "overflows at iteration" in str(exc), str(exc)
        assume(False)
    sheet = layout.SheetLayout(nw)
    setup = {e.key: e.value for e in sheet.setup}
    expected = sheet.run(setup, np.asarray(etas), steps)
    for j, eta in enumerate(etas):
        found = recalculated_values(out, sheet, layout.lr_sheet_title(eta), steps)
        for key in sheet.keys:
            want = expected[key][:, j]
            # LibreOffice keeps 15 significant digits of every value it saves
            scale = max(1.0, float(np.max(np.abs(want))))
            np.testing.assert_allclose(
                found[key], want, rtol=1e-9, atol=1e-12 * scale, err_msg=f"{key} of {case}"
            )
    report = verify.verify_workbook(out)
    assert report.engine == "cached"  # LibreOffice's values, saved by LibreOffice
    assert report.ok, f"{case} η={etas} steps={steps}\n{report.text()}"


def test_cases_cover_the_file_format() -> None:
    """The strategy's bounds are the file format's: its largest network is a valid file."""
    big = Case((16, 16, 16, 16), ("tanh", "relu", "softmax"), "cross_entropy", True, 50, 1)
    assert description.MAX_WEIGHT_LAYERS == 3
    assert MAX_WIDTH <= description.MAX_WIDTH and MAX_SAMPLES <= description.MAX_SAMPLES
    nw = big.network()
    assert nw.net.layers == (16, 16, 16, 16) and nw.samples == 50 and nw.bias == "trained"
    assert set(description.BIAS_MODES) == set(BIAS)
    assert set(network.LOSSES) == set(OUTPUT)
    assert set(HIDDEN) | {"softmax"} == set(network.ACTIVATIONS)
    assert math.isclose(float(np.sum(nw.targets)), 50.0)
