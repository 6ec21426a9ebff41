"""The sheet layout derived from a network description: the seed exactly as it always was, and
every general net's formulas against NumPy's values of the same cells."""

from __future__ import annotations

import re

import numpy as np
import pytest
from openpyxl.utils import column_index_from_string, get_column_letter

from backprop_xlsx.errors import BpxlError
from backprop_xlsx.mlp import description, layout
from backprop_xlsx.verify.lr_formulas import compile_formula
from backprop_xlsx.xlsx.formula import tokenize

# The seed's layout as bpxl wrote it before layouts were derived (header A:AE, every formula):
# the default build must keep it exactly.
SEED_ROW4 = {
    "t1": "=Setup!$B$6",
    "t2": "=Setup!$B$7",
    "i1": "=Setup!$B$4",
    "i2": "=Setup!$B$5",
    "w1": "=Setup!$B$8",
    "w2": "=Setup!$B$9",
    "w3": "=Setup!$B$10",
    "w4": "=Setup!$B$11",
    "h1": "=E4*C4+F4*D4",
    "a_h1": "=1/(1+EXP(-I4))",
    "h2": "=G4*C4+H4*D4",
    "a_h2": "=1/(1+EXP(-K4))",
    "w5": "=Setup!$B$12",
    "w6": "=Setup!$B$13",
    "w7": "=Setup!$B$14",
    "w8": "=Setup!$B$15",
    "o1": "=M4*J4+N4*L4",
    "a_o1": "=1/(1+EXP(-Q4))",
    "o2": "=O4*J4+P4*L4",
    "a_o2": "=1/(1+EXP(-S4))",
    "E1": "=0.5*(A4-R4)^2",
    "E2": "=0.5*(B4-T4)^2",
    "E_total": "=U4+V4",
    "dE_dw1": "=((R4-A4)*R4*(1-R4)*M4+(T4-B4)*T4*(1-T4)*O4)*J4*(1-J4)*C4",
    "dE_dw2": "=((R4-A4)*R4*(1-R4)*M4+(T4-B4)*T4*(1-T4)*O4)*J4*(1-J4)*D4",
    "dE_dw3": "=((R4-A4)*R4*(1-R4)*N4+(T4-B4)*T4*(1-T4)*P4)*L4*(1-L4)*C4",
    "dE_dw4": "=((R4-A4)*R4*(1-R4)*N4+(T4-B4)*T4*(1-T4)*P4)*L4*(1-L4)*D4",
    "dE_dw5": "=(R4-A4)*R4*(1-R4)*J4",
    "dE_dw6": "=(R4-A4)*R4*(1-R4)*L4",
    "dE_dw7": "=(T4-B4)*T4*(1-T4)*J4",
    "dE_dw8": "=(T4-B4)*T4*(1-T4)*L4",
}
SEED_ROW5 = {
    "t1": "=Setup!$B$6",
    "t2": "=Setup!$B$7",
    "i1": "=Setup!$B$4",
    "i2": "=Setup!$B$5",
    "w1": "=E4-$B$1*X4",
    "w2": "=F4-$B$1*Y4",
    "w3": "=G4-$B$1*Z4",
    "w4": "=H4-$B$1*AA4",
    "h1": "=E5*C5+F5*D5",
    "a_h1": "=1/(1+EXP(-I5))",
    "h2": "=G5*C5+H5*D5",
    "a_h2": "=1/(1+EXP(-K5))",
    "w5": "=M4-$B$1*AB4",
    "w6": "=N4-$B$1*AC4",
    "w7": "=O4-$B$1*AD4",
    "w8": "=P4-$B$1*AE4",
    "o1": "=M5*J5+N5*L5",
    "a_o1": "=1/(1+EXP(-Q5))",
    "o2": "=O5*J5+P5*L5",
    "a_o2": "=1/(1+EXP(-S5))",
    "E1": "=0.5*(A5-R5)^2",
    "E2": "=0.5*(B5-T5)^2",
    "E_total": "=U5+V5",
    "dE_dw1": "=((R5-A5)*R5*(1-R5)*M5+(T5-B5)*T5*(1-T5)*O5)*J5*(1-J5)*C5",
    "dE_dw2": "=((R5-A5)*R5*(1-R5)*M5+(T5-B5)*T5*(1-T5)*O5)*J5*(1-J5)*D5",
    "dE_dw3": "=((R5-A5)*R5*(1-R5)*N5+(T5-B5)*T5*(1-T5)*P5)*L5*(1-L5)*C5",
    "dE_dw4": "=((R5-A5)*R5*(1-R5)*N5+(T5-B5)*T5*(1-T5)*P5)*L5*(1-L5)*D5",
    "dE_dw5": "=(R5-A5)*R5*(1-R5)*J5",
    "dE_dw6": "=(R5-A5)*R5*(1-R5)*L5",
    "dE_dw7": "=(T5-B5)*T5*(1-T5)*J5",
    "dE_dw8": "=(T5-B5)*T5*(1-T5)*L5",
}
SEED_HEADERS = [
    "t1",
    "t2",
    "i1",
    "i2",
    "w1",
    "w2",
    "w3",
    "w4",
    "h1",
    "a_h1",
    "h2",
    "a_h2",
    "w5",
    "w6",
    "w7",
    "w8",
    "o1",
    "a_o1",
    "o2",
    "a_o2",
    "E1",
    "E2",
    "E_total",
    "∂E/∂w1",
    "∂E/∂w2",
    "∂E/∂w3",
    "∂E/∂w4",
    "∂E/∂w5",
    "∂E/∂w6",
    "∂E/∂w7",
    "∂E/∂w8",
]


def test_the_seed_keeps_exactly_its_layout() -> None:
    """Without the iteration column: the layout of a workbook of bpxl before 0.3, which
    `bpxl verify` still checks."""
    seed = layout.SheetLayout(description.preset("seed"), iteration_column=False)
    assert [c.header for c in seed.columns] == SEED_HEADERS
    assert [c.letter for c in seed.columns][-1] == "AE"
    assert {c.key: c.formula(4) for c in seed.columns} == SEED_ROW4
    assert {c.key: c.formula(5) for c in seed.columns} == SEED_ROW5
    # every row after the first follows the same relative pattern
    for c in seed.columns:
        assert c.pattern().format(r=9, p=8) == c.formula(9)
    assert seed.setup_row == {  # the assignment's order, from row 4
        name: 4 + k
        for k, name in enumerate(["i1", "i2", "t1", "t2", *(f"w{n}" for n in range(1, 9))])
    }


def _shifted(formula: str) -> str:
    """A formula with every relative reference one column to the right (Setup's and η's are
    absolute)."""
    return re.sub(
        r"(?<![$A-Z])([A-Z]{1,3})(\d+)\b",
        lambda m: get_column_letter(column_index_from_string(m[1]) + 1) + m[2],
        formula,
    )


def test_the_seed_is_its_classic_block_right_of_an_iteration_column() -> None:
    """t1 … ∂E/∂w8 contiguous and in order, every formula the old one moved one column right;
    column A counts the iterations from 0 by a formula of the row above."""
    seed = layout.SEED_LAYOUT
    assert [c.header for c in seed.columns] == [layout.ITERATION, *SEED_HEADERS]
    assert [c.letter for c in seed.columns][:2] == ["A", "B"]
    assert seed.columns[-1].letter == "AF"
    iteration = seed.columns[0]
    assert iteration.formula(4) == "=0" and iteration.formula(5) == "=A4+1"
    assert iteration.formula(104) == "=A103+1"
    assert {c.key: c.formula(4) for c in seed.columns[1:]} == {
        k: _shifted(f) for k, f in SEED_ROW4.items()
    }
    assert {c.key: c.formula(5) for c in seed.columns[1:]} == {
        k: _shifted(f) for k, f in SEED_ROW5.items()
    }
    assert seed.columns[5].formula(5) == "=F4-$B$1*Y4"  # w1 ← w1 − η·∂E/∂w1 of the row above


def test_the_iteration_column_counts_from_zero() -> None:
    network = description.preset("xor")
    sheet = layout.SheetLayout(network)
    setup = {e.key: e.value for e in sheet.setup}
    values = sheet.run(setup, [0.5, 2.0], 7)
    assert values[layout.ITERATION].shape == (8, 2)
    np.testing.assert_array_equal(values[layout.ITERATION][:, 1], np.arange(8))
    assert next(iter(values)) == layout.ITERATION


# ---------------------------------------------------------------------------------------------
# Every column's formula, evaluated on NumPy's values of the cells it reads, gives NumPy's value


def _random_network(rng: np.random.Generator, loss: str, bias: str, samples: int):  # type: ignore[no-untyped-def]
    depth = int(rng.integers(1, 4))
    layers = [int(n) for n in rng.integers(1, 4, depth + 1)]
    hidden = [str(rng.choice(["sigmoid", "tanh", "relu", "linear"])) for _ in range(depth - 1)]
    output = {
        "mse": rng.choice(["sigmoid", "tanh", "relu", "linear"]),
        "cross_entropy": "softmax",
        "binary_cross_entropy": "sigmoid",
    }[loss]
    if loss == "cross_entropy":
        layers[-1] = max(2, layers[-1])
        targets = rng.dirichlet(np.ones(layers[-1]), samples)
    else:
        targets = rng.uniform(0, 1, (samples, layers[-1]))
    data = {
        "layers": layers,
        "activations": [*hidden, str(output)],
        "loss": loss,
        "bias": {"none": False, "trained": True, "fixed": "fixed"}[bias],
        "inputs": rng.uniform(-1, 1, (samples, layers[0])).tolist(),
        "targets": targets.tolist(),
        "seed": int(rng.integers(0, 1000)),
    }
    if bias != "none":
        data["biases"] = rng.uniform(-1, 1, sum(layers[1:])).tolist()
    return description.from_mapping(data)


@pytest.mark.parametrize("loss", ["mse", "cross_entropy", "binary_cross_entropy"])
@pytest.mark.parametrize("bias", ["none", "trained", "fixed"])
@pytest.mark.parametrize("samples", [1, 3])
def test_formulas_compute_numpys_values(loss: str, bias: str, samples: int) -> None:
    rng = np.random.default_rng([len(loss), len(bias), samples])
    for _ in range(10):
        net = _random_network(rng, loss, bias, samples)
        sheet = layout.SheetLayout(net)
        setup = {e.key: e.value for e in sheet.setup}
        etas = np.array([0.3, 1.1])
        values = sheet.run(setup, etas, 3)
        titles = {t.casefold(): t for t in (layout.SETUP_SHEET, "LR 1")}
        for col, column in enumerate(sheet.columns, start=1):
            for k in range(4):
                # the formula as written into the sheet, compiled by the verifier's compiler
                row = layout.FIRST_ROW + k
                text = column.formula(row)[1:]
                tokens = tokenize(text, row, col, "LR 1", titles)
                expr, _ = compile_formula(tokens, row, col, k == 0, sheet)
                env = {
                    "cur": {name: v[k] for name, v in values.items()},
                    "prev": {name: v[k - 1] for name, v in values.items()} if k else {},
                    "setup": setup,
                    "eta": etas,
                }
                with np.errstate(all="ignore"):
                    got = np.broadcast_to(expr(env), etas.shape)
                np.testing.assert_allclose(
                    got,
                    values[column.key][k],
                    rtol=1e-12,
                    atol=1e-15,
                    err_msg=f"{column.key} = {text}, iteration {k}",
                )


def test_general_header_names_come_from_the_math() -> None:
    xor = layout.SheetLayout(description.preset("xor"))
    headers = [c.header for c in xor.columns]
    assert len(headers) == len(set(headers)) == 1 + 91  # the iteration, then the math
    assert headers[0] == layout.ITERATION
    for name in ["E_total", *(f"w{k}" for k in range(1, 10)), *(f"b{k}" for k in range(1, 5))]:
        assert headers.count(name) == 1, name
    for name in ["a_h1⁽¹⁾", "a_h3⁽⁴⁾", "δo1⁽²⁾", "δh2⁽³⁾", "∂E/∂w9", "∂E/∂b4", "t1⁽⁴⁾"]:
        assert name in headers
    # δ of a hidden neuron reads only its own fan-out, of its own sample
    dh1 = xor.column["d_h1_s2"].formula(4)
    assert re.findall(r"[A-Z]+(?=4)", dh1) and "_" not in dh1
    assert xor.templates["d_h1_s2"][0] == "=({d_o1_s2}*{w7})*{a_h1_s2}*(1-{a_h1_s2})"
    assert xor.templates["h1_s3"][0] == "={w1}*{i1_s3}+{w2}*{i2_s3}+{b1}"
    assert xor.templates["dE_dw1"][0] == "=" + "+".join(
        f"{{d_h1_s{s}}}*{{i1_s{s}}}" for s in range(1, 5)
    )
    mazur = layout.SheetLayout(description.preset("mazur"))
    assert mazur.templates["b1"] == ("={setup b1}", "={setup b1}")  # fixed: never updated
    assert "dE_db1" not in mazur.column
    assert [e.name for e in mazur.setup][-4:] == ["b1", "b2", "b3", "b4"]


def test_too_big_a_network_is_refused_with_its_size() -> None:
    sheet = layout.SheetLayout(description.preset("softmax"))
    layout.check_size(sheet, 3, 500)
    with pytest.raises(BpxlError, match=r"needs 230 columns and 138,001,380 formulas"):
        layout.check_size(sheet, 6, 100_000)
    wide = description.from_mapping(
        {"layers": [64, 64, 64], "inputs": [[0] * 64] * 20, "targets": [[0] * 64] * 20}
    )
    with pytest.raises(BpxlError, match=r"needs 27,906 columns per iteration; .* at most 16,384"):
        layout.SheetLayout(wide)
