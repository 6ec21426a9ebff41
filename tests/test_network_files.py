"""Every wrong network file gets one `error:` line that starts with the key it is about.

Each case is a real TOML file given to the real CLI (`bpxl build --config FILE`): exit 2, one line
on stderr, no traceback, no workbook, and the line names the file and then the key (samples and
list entries counted from 1). docs/network-files.md documents every key these cases cover.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _cli import bpxl

from backprop_xlsx.cli import cli

ROOT = Path(__file__).resolve().parent.parent
GOOD = "layers = [2, 2]\ninputs = [[0, 1]]\ntargets = [[1, 0]]\n"

# (id, file text, what the message starts with after "error: FILE: ")
CASES = [
    ("unknown key", GOOD + "colour = 1", "unknown key 'colour'"),
    ("layers missing", 'activations = ["sigmoid"]\ninputs = [[0, 1]]\ntargets = [[1]]',
     "layers: required with activations"),
    ("layers missing, only data", "inputs = [[0, 1]]\ntargets = [[1]]",
     "layers: required with inputs"),
    ("layers not a list", GOOD.replace("[2, 2]", '"2, 2"'), "layers: must be a list"),
    ("layers one width", GOOD.replace("[2, 2]", "[2]"), "layers: must give 1 to 3 weight layers"),
    ("layers five widths", GOOD.replace("[2, 2]", "[2, 2, 2, 2, 2]"),
     "layers: must give 1 to 3 weight layers"),
    ("layers width 0", GOOD.replace("[2, 2]", "[2, 0]"),
     "layers, number 2 (1-based): each width must be 1 to 64, got 0"),
    ("activations unknown", GOOD + 'activations = ["swish"]',
     "activations, number 1 (1-based): unknown 'swish'"),
    ("activations too many", GOOD + 'activations = ["tanh", "tanh"]',
     "activations: 2 given, but layers [2, 2] has 1 weight layer"),
    ("activations not a list", GOOD + 'activations = "tanh"', "activations: must be a list"),
    ("softmax hidden", 'layers = [2, 2, 2]\ninputs = [[0, 1]]\ntargets = [[1, 0]]\n'
     'activations = ["softmax", "softmax"]\nloss = "cross_entropy"',
     "activations, number 1 (1-based): softmax is only allowed on the output layer"),
    ("loss missing with softmax", GOOD + 'activations = ["softmax"]',
     'loss: not given, so "mse", which does not go with the softmax output'),
    ("loss mse with softmax", GOOD + 'activations = ["softmax"]\nloss = "mse"',
     'loss = "mse" does not go with the softmax output'),
    ("activations missing with cross_entropy", GOOD + 'loss = "cross_entropy"',
     "activations: not given, so every layer is sigmoid, but loss = \"cross_entropy\""),
    ("tanh with cross_entropy", GOOD + 'activations = ["tanh"]\nloss = "cross_entropy"',
     "activations: the output layer is tanh, but loss = \"cross_entropy\""),
    ("tanh with binary_cross_entropy", GOOD + 'activations = ["tanh"]\n'
     'loss = "binary_cross_entropy"',
     'activations: the output layer is tanh, but loss = "binary_cross_entropy"'),
    ("loss unknown", GOOD + 'loss = "hinge"', "loss: unknown 'hinge'"),
    ("softmax of one output", 'layers = [2, 1]\ninputs = [[0, 1]]\ntargets = [[1]]\n'
     'activations = ["softmax"]\nloss = "cross_entropy"',
     "layers: the output layer has 1 neuron, but a softmax output needs at least 2"),
    ("bias wrong", GOOD + 'bias = "maybe"', 'bias: must be true, false or "fixed"'),
    ("biases without bias", GOOD + "biases = [1, 2]",
     "biases: given, but bias is not given (default false)"),
    ("biases with bias false", GOOD + "bias = false\nbiases = [1, 2]",
     "biases: given, but bias = false"),
    ("biases count", GOOD + "bias = true\nbiases = [1]",
     "biases: 1 number, layers [2, 2] has 2 biases"),
    ("weights count", GOOD + "weights = [1, 2, 3]",
     "weights: 3 numbers, layers [2, 2] has 4 weights (w1…w4"),
    ("weights entry", GOOD + 'weights = [1, "x", 3, 4]',
     "weights, number 2 (1-based): must be a number, got 'x'"),
    ("inputs missing", 'layers = [2, 2]\ntargets = [[1, 0]]', "inputs: required"),
    ("targets missing", 'layers = [2, 2]\ninputs = [[0, 1]]', "targets: required"),
    ("inputs not rows", GOOD.replace("inputs = [[0, 1]]", "inputs = [0, 1]"),
     "inputs, sample 1 (1-based): must be a list of 2 numbers, got 0"),
    ("inputs row width", GOOD.replace("[[0, 1]]", "[[0, 1, 2]]"),
     "inputs, sample 1 (1-based): 3 numbers, the input layer has 2"),
    ("targets row width", 'layers = [2, 1]\ninputs = [[0, 1], [1, 1]]\ntargets = [[1], [1, 2, 3]]',
     "targets, sample 2 (1-based): 3 numbers, the output layer has 1"),
    ("inputs entry", GOOD.replace("[[0, 1]]", "[[0, nan]]"),
     "inputs, sample 1, number 2 (both 1-based): must be a finite number"),
    ("samples differ", GOOD.replace("[[1, 0]]", "[[1, 0], [0, 1]]"),
     "targets: 2 samples, but inputs has 1"),
    ("too many samples", 'layers = [1, 1]\ninputs = [' + "[0], " * 65 + ']\ntargets = [[0]]',
     "inputs: 65 samples, at most 64"),
    ("cross_entropy target", 'layers = [2, 2]\nactivations = ["softmax"]\n'
     'loss = "cross_entropy"\ninputs = [[0, 1], [1, 0]]\ntargets = [[1, 0], [1, 1]]',
     "targets, sample 2 (1-based): with loss = cross_entropy a row must be ≥ 0 and sum to 1"),
    ("binary_cross_entropy target", GOOD.replace("[[1, 0]]", "[[1, 2]]")
     + 'loss = "binary_cross_entropy"',
     "targets, sample 1 (1-based): with loss = binary_cross_entropy each target must be in"),
    ("seed", GOOD + "seed = -1", "seed: must be a whole number ≥ 0"),
    ("lr empty", GOOD + "lr = []", "lr: the list is empty"),
    ("lr not a list", GOOD + "lr = 0.5", "lr: must be a list of numbers"),
    ("lr negative", GOOD + "lr = [0.5, -1]", "lr, number 2 (1-based): must be > 0"),
    ("lr twice", GOOD + "lr = [0.5, 0.5]", "lr, number 2 (1-based): 0.5 is given twice"),
    ("steps 0", GOOD + "steps = 0", "steps: must be a whole number from 1 to 100,000"),
    ("steps too many", GOOD + "steps = 1000000", "steps: must be a whole number from 1 to"),
    ("description", GOOD + "description = 3", "description: must be text"),
    ("seed's key not a number", 'i1 = "x"', "i1: must be a number"),
    ("seed's key with layers", GOOD + "w1 = 0.3", "w1: the seed's keys (i1 … w8)"),
    ("seed's key with inputs", "i1 = 0.3\ninputs = [[0, 1]]", "inputs: the seed's keys (i1 … w8)"),
]  # fmt: skip


def build(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`bpxl build --config net.toml` through the CLI's own entry point; (exit code, stderr)."""
    config = tmp_path / "net.toml"
    config.write_text(text, encoding="utf-8")
    out = tmp_path / "book.xlsx"
    with pytest.raises(SystemExit) as done:
        cli.main(["build", "--config", str(config), "--out", str(out)], prog_name="bpxl")
    assert not out.exists() or done.value.code == 0
    return done.value.code, capsys.readouterr().err


@pytest.mark.parametrize(("text", "starts"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_wrong_network_file_names_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, starts: str
) -> None:
    code, err = build(tmp_path, text, capsys)
    assert code == 2
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith(f"error: {tmp_path / 'net.toml'}: {starts}"), err


@pytest.mark.parametrize(
    "text",
    [GOOD, GOOD + 'activations = ["softmax"]\nloss = "cross_entropy"', "t1 = 0.9\nlr = [0.5]", ""],
    ids=["general", "softmax", "seed's short form", "empty: the seed"],
)
def test_the_defaults_make_a_network(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    """The counterpart: each key left out takes its documented default."""
    code, err = build(tmp_path, text + "\nsteps = 3\n", capsys)
    assert (code, err) == (0, "")
    assert (tmp_path / "book.xlsx").stat().st_size > 0


def test_the_real_process_says_the_same(tmp_path: Path) -> None:
    config = tmp_path / "net.toml"
    config.write_text({c[0]: c[1] for c in CASES}["targets row width"], encoding="utf-8")
    done = bpxl("build", "--config", str(config), "--out", str(tmp_path / "book.xlsx"))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (
        f"error: {config}: targets, sample 2 (1-based): 3 numbers, the output layer has 1\n"
    )


def test_the_reference_lists_every_key() -> None:
    """docs/network-files.md has a table row for each key a file may hold."""
    from backprop_xlsx.mlp.description import KEYS, SEED_KEYS

    doc = (ROOT / "docs" / "network-files.md").read_text(encoding="utf-8")
    rows = [line for line in doc.splitlines() if line.startswith("| `")]
    first_cells = " ".join(row.split("|")[1] for row in rows)
    named = set(re.findall(r"`(\w+)`", first_cells))
    named |= {f"w{k}" for k in range(1, 9)} if {"w1", "w8"} <= named else set()
    assert set(KEYS) | set(SEED_KEYS) <= named, sorted(set(KEYS) | set(SEED_KEYS) - named)
