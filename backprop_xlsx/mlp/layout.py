"""Where everything lives in the workbook: the one source of truth for sheets, cells and formulas.

The writer turns this layout into cells; the verifier reads the same layout to know what every
cell must hold. Formulas are written once, as templates in the names of the math:

    {w1}        the w1 cell of the same row
    {prev w1}   the w1 cell of the row above (the previous iteration)
    {setup w1}  the w1 cell of the Setup sheet (absolute)
    {eta}       this sheet's learning-rate cell (absolute)
    {schedule}  the mini-batch schedule on Setup (absolute range; mini-batch runs only)
    {data}      the training set's values on Setup, column B (absolute range; likewise)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from openpyxl.utils import get_column_letter
from openpyxl.utils.cell import absolute_coordinate

from backprop_xlsx.errors import BpxlError
from backprop_xlsx.mlp import batches
from backprop_xlsx.mlp.description import DEFAULT_PRESET, Network, preset
from backprop_xlsx.mlp.formulas import (  # noqa: F401  (re-exported: the layout's vocabulary)
    FORMAT_DATA,
    FORMAT_ITERATION,
    FORMAT_SMALL,
    FORMAT_VALUE,
    ITERATION,
    MAX_COLUMNS,
    MAX_FORMULAS,
    SUPERSCRIPT,
    BatchFormulas,
    Formulas,
    fill,
    neuron_letter,
)
from backprop_xlsx.mlp.network import QUANTITIES, History, train_network
from backprop_xlsx.mlp.optim import HYPERPARAMETERS, OPTIMIZERS
from backprop_xlsx.xlsx.formula import sheet_ref

SETUP_SHEET = "Setup"
# docProps/app.xml's Application in a workbook bpxl wrote: its cached values are NumPy's, so
# `bpxl verify` recalculates such a file in a real engine instead of taking them as evidence.
APPLICATION = "bpxl"
SUMMARY_SHEET = "Error vs LR"
# The comparison sheet of a workbook with optimizers other than plain gradient descent: the
# same tables and chart as Error vs LR, over every training sheet, in its place.
OPTIMIZER_SHEET = "Optimizers"

# Setup sheet: one row per starting value, name in column A, value in column B.
SETUP_FIRST_ROW = 4
SETUP_VALUE_COLUMN = "B"
SETUP_HEADER_ROW = SETUP_FIRST_ROW - 1  # name | value | meaning


def setup_value_ref(row: int) -> str:
    """Absolute reference to a value on the Setup sheet, e.g. Setup!$B$8."""
    return f"{sheet_ref(SETUP_SHEET)}!{absolute_coordinate(f'{SETUP_VALUE_COLUMN}{row}')}"


def setup_equations_row(entries: int) -> int:
    """First row of the equations and chain-rule derivations (text in column A), two rows below
    the last of `entries` starting values."""
    return SETUP_FIRST_ROW + entries + 2


# The network, as text on Setup (what it is; the numbers are the yellow cells): label in I,
# value in J, from the header row down. `bpxl verify` reads the architecture from here.
SETUP_NETWORK_COLUMNS = ("I", "J")
NETWORK_FIELDS = ("preset", "layers", "activations", "loss", "bias", "samples", "layout")
# A mini-batch run's Setup also shows its schedule (see batches.py) and these network fields.
BATCH_FIELDS = ("batch size", "shuffle seed", "epochs")
# The schedule table, right of the network: epoch in L, the sample at position p in M + p − 1.
SETUP_SCHEDULE_EPOCH_COLUMN = "L"
SETUP_SCHEDULE_FIRST_COLUMN = 13  # M
# The learning rates, right of the values: η (live) | sheet (hyperlink) | final E_total (live).
SETUP_LR_HEADER_ROW = SETUP_HEADER_ROW
SETUP_LR_COLUMNS = ("E", "F", "G")

# LR sheets: η in B1, the header in row 3, iteration 0 (the initial weights) in row 4.
ETA_CELL = "B1"
HEADER_ROW = 3
FIRST_ROW = 4

MAX_SHEET_TITLE = 31  # Excel refuses longer sheet names


def lr_sheet_title(eta: float) -> str:
    """`LR 0.1`, `LR 2`: the sheet of one learning rate, distinct for every distinct η.

    `{:g}` (6 significant digits) where it is exact, else the shortest text that reads back as
    the same float (Python's repr), so 0.1234567 and 0.1234568 never share a sheet. The longest
    float repr has 24 characters, so a title never exceeds Excel's 31.
    """
    short = f"{eta:g}"
    title = f"LR {short if float(short) == eta else repr(float(eta))}"
    assert len(title) <= MAX_SHEET_TITLE, title
    return title


def sheet_title(optimizer: str, eta: float) -> str:
    """`LR 0.1` for plain gradient descent, `Adam 0.05`, `Momentum 0.1` for the others: the
    training sheet of one optimizer and learning rate (η written as in lr_sheet_title)."""
    title = lr_sheet_title(eta)
    if optimizer == "sgd":
        return title
    title = OPTIMIZERS[optimizer].label + title[2:]
    if len(title) > MAX_SHEET_TITLE:
        raise BpxlError(
            f"learning rate {eta!r} has too many digits for a sheet title ({title!r} is longer "
            f"than Excel's {MAX_SHEET_TITLE} characters): round it"
        )
    return title


_BY_LABEL = {o.label.casefold(): o.name for o in OPTIMIZERS.values()}


def training_sheet(title: str) -> tuple[str, float] | None:
    """(optimizer, η) of a training sheet's title (`LR 0.1`, `adam 0.05`: case-insensitive, as
    Excel's sheet names are), or None for any other title."""
    label, _, number = title.partition(" ")
    optimizer = _BY_LABEL.get(label.casefold())
    if optimizer is None:
        return None
    try:
        return optimizer, float(number)
    except ValueError:
        return None


def summary_title(optimizers: Sequence[str]) -> str:
    """Error vs LR for plain gradient descent alone, else Optimizers."""
    return SUMMARY_SHEET if set(optimizers) == {"sgd"} else OPTIMIZER_SHEET


def setup_lr_row(j: int) -> int:
    """Row of the j-th learning rate in the Setup sheet's list of learning rates."""
    return SETUP_LR_HEADER_ROW + 1 + j


def is_bpxl_sheet(title: str) -> bool:
    """Whether bpxl makes this sheet (and may rebuild it); any other sheet belongs to the user.

    Case-insensitive, as sheet names are in Excel: a `setup` sheet could not sit beside `Setup`.
    """
    folded = title.casefold()
    if folded in (SETUP_SHEET.casefold(), SUMMARY_SHEET.casefold(), OPTIMIZER_SHEET.casefold()):
        return True
    return training_sheet(title) is not None


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetupEntry:
    """One starting value on the Setup sheet: name in column A, value in B, meaning in C."""

    key: str  # "i1_s2", "w5", "b3"
    name: str  # as shown: "i1⁽²⁾"
    meaning: str
    value: float


@dataclass(frozen=True)
class Column:
    key: str  # the name in the math and in NumPy's values: "a_h1", "dE_dw5", "d_o1_s2"
    header: str  # the name in the header row: "a_h1", "∂E/∂w5", "δo1⁽²⁾"
    letter: str  # "J"
    number_format: str
    patterns: tuple[str, str]  # str.format patterns of iteration 0 and of every later row

    def formula(self, row: int) -> str:
        """The formula of this column in sheet row `row` (FIRST_ROW is iteration 0)."""
        pattern = self.patterns[0 if row == FIRST_ROW else 1]
        return pattern.format(r=row, p=row - 1)

    def pattern(self) -> str:
        """`formula` as a str.format pattern ({r} this row, {p} the row above), for bulk writing:
        pattern().format(r=row, p=row - 1) == formula(row) for every row after FIRST_ROW."""
        return self.patterns[1]


class SheetLayout(Formulas, BatchFormulas):
    """Every Setup entry and LR-sheet column of one network: the writer's and verifier's map.

    Formulas are written as templates in the names of the math and compiled once:
        {w1}        the w1 cell of the same row
        {prev w1}   the w1 cell of the row above (the previous iteration)
        {setup w1}  the w1 value cell of the Setup sheet (absolute)
        {eta}       this sheet's learning-rate cell (absolute)
    """

    def __init__(
        self,
        network: Network,
        *,
        iteration_column: bool = True,
        optimizer: str = "sgd",
        hyper: Mapping[str, float] | None = None,
    ) -> None:
        self.network = network
        # the update rule of this sheet, and the hyperparameters Setup lists (key → value): all
        # the workbook's optimizers read, so every training sheet shares one Setup
        self.optimizer = OPTIMIZERS[optimizer]
        if hyper is None:  # this optimizer's own, with torch.optim's defaults
            hyper = {k: HYPERPARAMETERS[k].default for k in self.optimizer.hyper}
        self.hyper = dict(hyper)
        missing = set(self.optimizer.hyper) - set(self.hyper)
        assert not missing, f"{optimizer} needs {sorted(missing)} on Setup"
        # the seed's own layout (no δ columns, δ inlined in the gradients): the network says
        self.classic = network.classic
        # Column A numbers the iterations; workbooks of bpxl before 0.3 start with the data.
        self.iteration_column = iteration_column
        net = network.net
        self.batching = network.batching
        self.training_samples = network.samples  # S: the Setup entries i1⁽ˢ⁾ …
        # columns per quantity: one per sample, or with mini-batches one per batch position
        self.samples = network.samples if self.batching is None else self.batching.batch_size
        self.depth = net.depth
        self.names = [
            [f"{neuron_letter(layer, net.depth)}{j + 1}" for j in range(width)]
            for layer, width in enumerate(net.layers)
        ]
        self.weight_number = self._number_weights()
        self.bias_number = self._number_biases()
        self.setup = self._setup_entries()
        self.setup_row = {e.key: SETUP_FIRST_ROW + k for k, e in enumerate(self.setup)}
        templates = self._templates()
        self.templates = {key: (first, later) for key, (_, _, first, later) in templates.items()}
        if len(templates) > MAX_COLUMNS:
            raise BpxlError(
                f"this network needs {len(templates):,} columns per iteration; a sheet holds at "
                f"most {MAX_COLUMNS:,}: use fewer samples or neurons"
            )
        letters = {key: get_column_letter(k + 1) for k, key in enumerate(templates)}
        self.letter = letters

        def cell(where: str | None, name: str) -> str:
            if where == "setup":
                return setup_value_ref(self.setup_row[name])
            if name == "eta":
                return absolute_coordinate(ETA_CELL)
            if name in ("schedule", "data"):
                return self.setup_range(name)
            return letters[name] + ("{p}" if where == "prev" else "{r}")

        def compile_template(template: str) -> str:
            return fill(template, cell)

        self.columns = tuple(
            Column(
                key,
                header,
                letters[key],
                number_format,
                (compile_template(first), compile_template(later)),
            )
            for key, (header, number_format, first, later) in templates.items()
        )
        self.column = {c.key: c for c in self.columns}
        self.keys = tuple(self.column)

    # --- NumPy's values, by column key ---------------------------------------------------

    def parameters(
        self, setup: Mapping[str, np.ndarray | float]
    ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], list[np.ndarray | None]]:
        """x, t, W and b from Setup values by key (scalars, or arrays for many sets at once)."""
        shape = np.broadcast_shapes(*(np.shape(setup[e.key]) for e in self.setup))

        def grid(keys: list[list[str]]) -> np.ndarray:
            return np.stack(
                [np.stack([np.broadcast_to(setup[k], shape) for k in row], -1) for row in keys],
                -2,
            ).astype(np.float64)

        S, key = range(self.training_samples), self.setup_sample
        x = grid([[key(f"i{j + 1}", s) for j in range(len(self.names[0]))] for s in S])
        t = grid([[key(f"t{j + 1}", s) for j in range(len(self.names[-1]))] for s in S])
        W = [grid(rows) for rows in self.weight_number]
        b = [grid([keys])[..., 0, :] if keys else None for keys in self.bias_number]
        return x, t, W, b

    def run(
        self,
        setup: Mapping[str, np.ndarray | float],
        etas: Sequence[float] | np.ndarray,
        steps: int,
    ) -> dict[str, np.ndarray]:
        """NumPy's value of every column for every iteration: key → (steps + 1, *η's shape).

        With arrays in `setup`, they must have η's shape: one set of starting values per η.
        """
        x, t, W, b = self.parameters(setup)
        train = dict(
            train_bias=self.network.bias == "trained",
            optimizer=self.optimizer,
            hyper={k: setup[k] for k in self.optimizer.hyper},
        )
        if self.batching is None:
            return self.values(train_network(self.network.net, x, t, W, b, etas, steps, **train))
        B, S = self.batching.batch_size, self.training_samples
        numbers = batches.step_batches(self.batching.table(S, steps), B, steps)
        h = train_network(self.network.net, x, t, W, b, etas, steps, batches=numbers, **train)
        full = batches.full_pass(self.network.net, x, t, h.W, h.b)
        more = {"epoch": batches.step_epochs(S, B, steps), "E_train": full.E_train}
        for m in range(B):
            more[self.sample("n", m)] = numbers[:, m]
        for s in range(S):
            more[f"full_E_s{s + 1}"] = full.E[..., s]
            for layer in range(self.depth):
                for j, name in enumerate(self.names[layer + 1]):
                    more[f"full_a_{name}_s{s + 1}"] = full.a[layer + 1][..., s, j]
        return self.values(h, more)

    def schedule(self) -> np.ndarray:
        """The Setup sheet's table of a mini-batch run: (epochs, S) sample numbers, 1-based."""
        assert self.batching is not None
        return self.batching.table(self.training_samples)

    def setup_range(self, what: str) -> str:
        """Setup's schedule table or its training-set values (column B), as an absolute range."""
        assert self.batching is not None
        if what == "schedule":
            left = get_column_letter(SETUP_SCHEDULE_FIRST_COLUMN)
            right = get_column_letter(SETUP_SCHEDULE_FIRST_COLUMN + self.training_samples - 1)
            bottom = SETUP_FIRST_ROW + self.batching.epochs - 1
            cells = f"${left}${SETUP_FIRST_ROW}:${right}${bottom}"
        else:
            last = SETUP_FIRST_ROW + self.training_samples * self.stride - 1
            col = SETUP_VALUE_COLUMN
            cells = f"${col}${SETUP_FIRST_ROW}:${col}${last}"
        return f"{sheet_ref(SETUP_SHEET)}!{cells}"

    @property
    def loss_key(self) -> str:
        """The loss Setup and Error vs LR follow: E_total, or with mini-batches E_train (the
        whole training set's; the batch's E_total jumps from row to row)."""
        return "E_total" if self.batching is None else "E_train"

    @property
    def stride(self) -> int:
        """Setup entries per training sample: its inputs, then its targets."""
        return len(self.names[0]) + len(self.names[-1])

    def values(
        self, h: History, more: Mapping[str, np.ndarray] | None = None
    ) -> dict[str, np.ndarray]:
        """Every column's values from a training run; `more`: those of other columns, by key,
        shaped (steps + 1, *η's shape) or (steps + 1,)."""
        shape = h.E_total.shape
        out: dict[str, np.ndarray] = {}
        for key, value in (more or {}).items():
            value = np.asarray(value, dtype=np.float64)
            out[key] = np.broadcast_to(
                value.reshape(value.shape + (1,) * (len(shape) - value.ndim)), shape
            )

        def put(key: str, value: np.ndarray) -> None:
            if key in self.column:
                out[key] = np.broadcast_to(value, shape)

        S = range(self.samples)
        put(ITERATION, np.arange(shape[0], dtype=np.float64).reshape(-1, *(1,) * (len(shape) - 1)))
        for s in S:
            for j in range(len(self.names[-1])):
                put(self.sample(f"t{j + 1}", s), h.t[..., s, j])
                put(self.sample(f"E{j + 1}", s), h.E[..., s, j])
            for j in range(len(self.names[0])):
                put(self.sample(f"i{j + 1}", s), h.a[0][..., s, j])
        put("E_total", h.E_total)
        for layer in range(self.depth):
            for r, row in enumerate(self.weight_number[layer]):
                for c, w in enumerate(row):
                    put(w, h.W[layer][..., r, c])
                    put(f"dE_d{w}", h.dE_dW[layer][..., r, c])
            for j, bias in enumerate(self.bias_number[layer]):
                put(bias, h.b[layer][..., j])
                put(f"dE_d{bias}", h.dE_db[layer][..., j])
            for h_key in self.optimizer.powers if layer == 0 else ():  # βᵗ, one per sheet
                put(f"{h_key}_t", h.state_W[f"{h_key}_t"][0][..., 0, 0])
            for name in self.optimizer.states:
                for r, row in enumerate(self.weight_number[layer]):
                    for c, w in enumerate(row):
                        put(f"{name}_{w}", h.state_W[name][layer][..., r, c])
                trained = h.state_b.get(name, [None] * self.depth)[layer]
                for j, bias in enumerate(self.bias_number[layer]):
                    if trained is not None:
                        put(f"{name}_{bias}", trained[..., j])
            for s in S:
                for j, name in enumerate(self.names[layer + 1]):
                    put(self.sample(name, s), h.z[layer][..., s, j])
                    put(self.sample(f"a_{name}", s), h.a[layer + 1][..., s, j])
                    put(self.sample(f"d_{name}", s), h.delta[layer][..., s, j])
        missing = set(self.column) - set(out)
        assert not missing, f"no values for {sorted(missing)}"
        return {key: out[key] for key in self.column}

    # --- names ---------------------------------------------------------------------------

    def sample(self, key: str, s: int) -> str:
        """Key of a per-sample quantity: a_h1 for the only sample, a_h1_s2 with several; with
        mini-batches a_h1_b2 for position 2 of the row's batch."""
        if self.batching is not None:
            return f"{key}_b{s + 1}"
        return key if self.samples == 1 else f"{key}_s{s + 1}"

    def setup_sample(self, key: str, s: int) -> str:
        """Key of training sample s's Setup entry: i1 for the only sample, i1_s2 with several."""
        return key if self.training_samples == 1 else f"{key}_s{s + 1}"

    def sample_header(self, header: str, s: int) -> str:
        if self.samples == 1 and self.batching is None:
            return header
        return f"{header}⁽{str(s + 1).translate(SUPERSCRIPT)}⁾"

    def _number_weights(self) -> list[list[list[str]]]:
        """w1, w2, …: layer by layer, within a layer by receiving neuron, then sending neuron."""
        numbers, k = [], 0
        for layer in range(self.depth):
            rows = []
            for _ in self.names[layer + 1]:
                rows.append([f"w{k + j + 1}" for j in range(len(self.names[layer]))])
                k += len(self.names[layer])
            numbers.append(rows)
        return numbers

    def _number_biases(self) -> list[list[str]]:
        """b1, b2, …: neuron by neuron, layer by layer; [] per layer without biases."""
        if self.network.bias == "none":
            return [[] for _ in range(self.depth)]
        numbers, k = [], 0
        for layer in range(self.depth):
            numbers.append([f"b{k + j + 1}" for j in range(len(self.names[layer + 1]))])
            k += len(self.names[layer + 1])
        return numbers

    def _setup_entries(self) -> list[SetupEntry]:
        """The seed's order (i1 i2 t1 t2 w1 … w8), then the biases; per sample with several."""
        nw, entries, S = self.network, [], self.training_samples
        for s in range(S):
            for kind, values, word in (("i", nw.inputs, "input"), ("t", nw.targets, "target")):
                for j, value in enumerate(values[s]):
                    key = self.setup_sample(f"{kind}{j + 1}", s)
                    of = "" if S == 1 else f" of sample {s + 1}"
                    what = f"{word} {j + 1}{of}" if kind == "i" else f"target of output {j + 1}{of}"
                    name = f"{kind}{j + 1}"
                    name = name if S == 1 else f"{name}⁽{str(s + 1).translate(SUPERSCRIPT)}⁾"
                    entries.append(SetupEntry(key, name, what, float(value)))
        for layer in range(self.depth):
            for r, row in enumerate(self.weight_number[layer]):
                for c, key in enumerate(row):
                    sender = self.names[layer][c]
                    sender = sender if layer == 0 else f"a_{sender}"
                    meaning = f"weight {sender} → {self.names[layer + 1][r]}"
                    entries.append(SetupEntry(key, key, meaning, float(nw.W[layer][r, c])))
        for layer in range(self.depth):
            for j, key in enumerate(self.bias_number[layer]):
                meaning = f"bias of {self.names[layer + 1][j]}"
                if nw.bias == "fixed":
                    meaning += " (fixed)"
                entries.append(SetupEntry(key, key, meaning, float(nw.b[layer][j])))
        for key, value in self.hyper.items():
            h = HYPERPARAMETERS[key]
            entries.append(SetupEntry(key, h.symbol, h.meaning, float(value)))
        return entries


def exercise_columns(sheet: SheetLayout, blank: Sequence[str] = ()) -> frozenset[str]:
    """Keys of the LR-sheet columns an exercise leaves empty for the student to fill.

    `blank` names them by key or by header ("dE_dw3" or "∂E/∂w3"); by default every δ and every
    ∂E/∂ column, the backward pass the assignment is about.
    """
    if not blank:
        return frozenset(k for k in sheet.keys if k.startswith(("d_", "dE_")))
    by_name = {c.key: c.key for c in sheet.columns} | {c.header: c.key for c in sheet.columns}
    unknown = [name for name in blank if name not in by_name]
    if unknown:
        raise BpxlError(
            f"--blank {unknown[0]!r} is not a column of this network's LR sheets; columns: "
            + " ".join(c.header for c in sheet.columns)
        )
    return frozenset(by_name[name] for name in blank)


def exercise_note(column: Column) -> str:
    """The note on an exercise's empty column: what belongs there."""
    return (
        f"Exercise: this column is {column.header}. Type its formula in this row, from the cells "
        "of this row (the row above for a weight), and fill it down to the last row; the "
        "equations are on the Setup sheet. `bpxl verify` grades it."
    )


def check_size(layout: SheetLayout, n_lr: int, steps: int, total: int | None = None) -> None:
    """Refuse, before anything is written, a workbook no spreadsheet can hold or recalculate.

    `total`: the columns of one training sheet per optimizer, added up (the layout's alone by
    default); the widest sheet must fit a sheet, all of them bpxl's bound on formulas."""
    columns = len(layout.columns)
    formulas = n_lr * (steps + 1) * (columns if total is None else total)
    if columns > MAX_COLUMNS or formulas > MAX_FORMULAS:
        raise BpxlError(
            f"this network needs {columns:,} columns and {formulas:,} formulas "
            f"({n_lr} learning rate(s) × {steps + 1:,} iterations); a sheet holds at most "
            f"{MAX_COLUMNS:,} columns and bpxl writes at most {MAX_FORMULAS:,} formulas: "
            "use fewer samples, neurons, steps or learning rates"
        )


# The seed's layout: what verify assumes of a workbook whose Setup names no network (bpxl before
# the network text), and the tests' reference of the assignment's columns.
SEED_LAYOUT = SheetLayout(preset(DEFAULT_PRESET))
assert tuple(SEED_LAYOUT.column) == (ITERATION, *QUANTITIES), "the seed's columns, in order"


def row_of_iteration(k: int) -> int:
    return FIRST_ROW + k


def last_row(steps: int) -> int:
    """Sheet row of the last iteration: `steps` updates after the initial weights."""
    return FIRST_ROW + steps
