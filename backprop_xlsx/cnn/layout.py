"""Where every cell of the CNN sheets is, and the formula each one holds.

One description of the net (`Arch`: the convs, max-pools and the head, in order) determines the
three sheets completely: `MNIST digits` (test images, one per row), `MNIST weights` (the raw
weights and BatchNorm values as in the checkpoint, and the folded weights as formulas) and
`MNIST net` (the picked digit through every feature map to the ten probabilities). The writer
(sheets.py) and the verifier (check.py, which must not trust the file) both build the same
`NetLayout` from an `Arch`, so neither keeps its own idea of where a cell is. Pure Python: no
torch, no openpyxl. BatchNorm is folded into the conv before it (see `stage_formula`).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from backprop_xlsx.xlsx.formula import sheet_ref
from backprop_xlsx.xlsx.stream import LETTERS

DIGITS_SHEET = "MNIST digits"
WEIGHTS_SHEET = "MNIST weights"
NET_SHEET = "MNIST net"
SHEETS = (DIGITS_SHEET, WEIGHTS_SHEET, NET_SHEET)

IMAGE_SIZE = 28
PIXELS = IMAGE_SIZE * IMAGE_SIZE
CLASSES = 10
MEAN, STD = 0.1307, 0.3081  # mnist/data.py's normalisation, written as cells of the net sheet

# Limits a verifier enforces before it builds anything from a file's architecture table.
# The default net has 6 convs of ≤ 20 channels, 21,000 map cells and 1.4 M multiply-adds.
MAX_STAGES = 24
MAX_CHANNELS = 64
MAX_KERNEL = 7
MAX_IMAGES = 10_000
MAX_CELLS = 100_000  # feature-map cells of one net sheet
MAX_MULTIPLY_ADDS = 5_000_000  # bounds the formula text, ~25 MB


def a1(row: int, col: int, absolute: bool = False) -> str:
    """The A1 name of (row, col), e.g. a1(3, 6) = "F3", a1(3, 6, True) = "$F$3"."""
    letters = LETTERS[col]
    return f"${letters}${row}" if absolute else f"{letters}{row}"


def span(top: int, left: int, height: int, width: int, absolute: bool = False) -> str:
    """The A1 range of a height × width rectangle whose first cell is (top, left)."""
    first = a1(top, left, absolute)
    if height == width == 1:
        return first
    return f"{first}:{a1(top + height - 1, left + width - 1, absolute)}"


# ---------------------------------------------------------------------------------------------
# The architecture


@dataclass(frozen=True)
class Conv:
    """k×k convolution, stride 1, no padding; BatchNorm folded in when `bn`; then ReLU if `relu`."""

    name: str
    c_in: int
    c_out: int
    k: int
    bias: bool  # the conv has its own bias
    bn: bool
    relu: bool
    kind: str = "conv"


@dataclass(frozen=True)
class Pool:
    """k×k max-pool, stride k; `signed_by` names the conv whose BatchNorm comes after this pool
    (its scale's sign picks MAX or MIN); then ReLU if `relu`."""

    name: str
    k: int
    relu: bool
    signed_by: str | None
    kind: str = "maxpool"


@dataclass(frozen=True)
class Linear:
    """The linear head on the globally average-pooled channels."""

    name: str
    c_in: int
    c_out: int
    kind: str = "linear"


Stage = Conv | Pool


@dataclass(frozen=True)
class Shape:
    channels: int
    size: int  # height = width


@dataclass(frozen=True)
class Arch:
    """The net as the sheets compute it: features, global average pooling, optional fc, softmax."""

    stages: tuple[Stage, ...]
    fc: Linear | None

    def shapes(self) -> list[Shape]:
        """The input's shape, then every stage's output shape; ValueError if they do not fit."""
        shapes = [Shape(1, IMAGE_SIZE)]
        names = [s.name for s in self.stages] + ([self.fc.name] if self.fc else [])
        if len(set(names)) != len(names):
            raise ValueError("layer names must be distinct")
        for index, stage in enumerate(self.stages):
            now = shapes[-1]
            if isinstance(stage, Conv):
                if stage.c_in != now.channels:
                    raise ValueError(
                        f"{stage.name} takes {stage.c_in} channels but gets {now.channels}"
                    )
                shapes.append(Shape(stage.c_out, now.size - stage.k + 1))
            else:
                if stage.signed_by is not None:
                    before = self.stages[index - 1] if index else None
                    if not (
                        isinstance(before, Conv)
                        and before.name == stage.signed_by
                        and before.bn
                        and not before.relu
                    ):
                        raise ValueError(
                            f"{stage.name}: {stage.signed_by} is not a BatchNorm conv without "
                            "ReLU right before it"
                        )
                shapes.append(Shape(now.channels, now.size // stage.k))
            if shapes[-1].size < 1:
                raise ValueError(f"{stage.name} leaves no pixels ({now.size} wide before it)")
        last = shapes[-1].channels
        if self.fc is not None:
            if self.fc.c_in != last or self.fc.c_out != CLASSES:
                raise ValueError(
                    f"{self.fc.name} maps {self.fc.c_in}→{self.fc.c_out}, not {last}→10"
                )
        elif last != CLASSES:
            raise ValueError(f"the last stage has {last} channels: 10 class maps or an fc needed")
        return shapes

    def conv(self, name: str) -> Conv:
        return next(s for s in self.stages if isinstance(s, Conv) and s.name == name)


# ---------------------------------------------------------------------------------------------
# MNIST digits: A image number, B test-set index, C label, D prediction at export, E… pixels

DIGIT_FIRST_ROW = 2
DIGIT_COLUMNS = ("image", "test index", "label", "predicted at export")
PIXEL_COL = len(DIGIT_COLUMNS) + 1
LABEL_COL = 3


def digits_range(n_images: int, first_col: int, width: int) -> str:
    return span(DIGIT_FIRST_ROW, first_col, n_images, width, absolute=True)


# ---------------------------------------------------------------------------------------------
# MNIST weights

ARCH_TITLE_ROW = 3
ARCH_HEADER_ROW = 4
ARCH_COLUMNS = (
    "layer",
    "kind",
    "in channels",
    "out channels",
    "kernel",
    "conv bias",
    "BatchNorm",
    "ReLU",
    "pool sign from",
)


def arch_rows(arch: Arch) -> list[tuple[str, str, int, int, int, int, int, int, str]]:
    """The architecture table of the weights sheet, one row per stage and the fc."""
    rows = []
    for st in arch.stages:
        if isinstance(st, Conv):
            flags = (int(st.bias), int(st.bn), int(st.relu))
            rows.append((st.name, st.kind, st.c_in, st.c_out, st.k, *flags, ""))
        else:
            rows.append((st.name, st.kind, 0, 0, st.k, 0, 0, int(st.relu), st.signed_by or ""))
    if arch.fc is not None:
        rows.append((arch.fc.name, arch.fc.kind, arch.fc.c_in, arch.fc.c_out, 0, 1, 0, 0, ""))
    return rows


def arch_from_rows(rows: list[list[object]]) -> Arch:
    """An `Arch` from the table as read from a file; ValueError naming what is wrong."""
    if not 1 <= len(rows) <= MAX_STAGES + 1:
        raise ValueError(f"{len(rows)} layers (1 to {MAX_STAGES + 1} allowed)")

    def number(value: object, what: str, low: int, high: int) -> int:
        if not isinstance(value, int | float) or value != int(value) or not low <= value <= high:
            raise ValueError(f"{what} must be a whole number from {low} to {high}, not {value!r}")
        return int(value)

    stages: list[Stage] = []
    fc = None
    for n, row in enumerate(rows):
        if len(row) != len(ARCH_COLUMNS):
            raise ValueError(f"layer {n + 1} does not have {len(ARCH_COLUMNS)} columns")
        name, kind, c_in, c_out, k, bias, bn, relu, signed = row
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z][\w.]{0,30}", name):
            raise ValueError(f"layer {n + 1} has no proper name ({name!r})")
        if fc is not None:
            raise ValueError(f"{name} comes after the linear head")
        if kind == "conv":
            stages.append(
                Conv(
                    name,
                    number(c_in, f"{name} in channels", 1, MAX_CHANNELS),
                    number(c_out, f"{name} out channels", 1, MAX_CHANNELS),
                    number(k, f"{name} kernel", 1, MAX_KERNEL),
                    bool(number(bias, f"{name} conv bias", 0, 1)),
                    bool(number(bn, f"{name} BatchNorm", 0, 1)),
                    bool(number(relu, f"{name} ReLU", 0, 1)),
                )
            )
        elif kind == "maxpool":
            sign = signed if isinstance(signed, str) and signed else None
            k_pool = number(k, f"{name} kernel", 1, MAX_KERNEL)
            stages.append(Pool(name, k_pool, bool(number(relu, f"{name} ReLU", 0, 1)), sign))
        elif kind == "linear":
            fc = Linear(
                name,
                number(c_in, f"{name} in features", 1, MAX_CHANNELS),
                number(c_out, f"{name} out features", 1, MAX_CHANNELS),
            )
        else:
            raise ValueError(f"{name} is of unknown kind {kind!r} (conv, maxpool or linear)")
    arch = Arch(tuple(stages), fc)
    arch.shapes()
    return arch


# Per conv channel: γ, β, running mean, running var, ε, conv bias, then the two formulas.
BN_COLUMNS = ("out channel", "γ", "β", "running mean", "running var", "ε", "conv bias")
GAMMA, BETA, RUN_MEAN, RUN_VAR, EPS, CONV_BIAS, SCALE, FOLDED_BIAS = range(2, 10)
KERNELS_COL = 11  # K: the raw kernels start here


@dataclass(frozen=True)
class ConvWeights:
    """One conv's section of the weights sheet."""

    conv: Conv
    title_row: int
    first_row: int  # channel o's row is first_row + o·(k + 1)
    folded_col: int  # first column of the folded kernels (only with BatchNorm)

    def row(self, o: int) -> int:
        return self.first_row + o * (self.conv.k + 1)

    def raw(self, o: int, c: int) -> tuple[int, int]:
        """(top, left) of kernel w[o, c] as in the checkpoint."""
        return self.row(o), KERNELS_COL + c * (self.conv.k + 1)

    def folded(self, o: int, c: int) -> tuple[int, int]:
        return self.row(o), self.folded_col + c * (self.conv.k + 1)

    def kernel(self, o: int, c: int) -> tuple[int, int]:
        """The kernel the net sheet uses: folded with BatchNorm, else raw."""
        return self.folded(o, c) if self.conv.bn else self.raw(o, c)

    def bias_cell(self, o: int) -> tuple[int, int] | None:
        """The bias the net sheet adds: the folded one, the conv's own, or none."""
        if self.conv.bn:
            return self.row(o), FOLDED_BIAS
        return (self.row(o), CONV_BIAS) if self.conv.bias else None

    @property
    def last_row(self) -> int:
        return self.row(self.conv.c_out - 1) + self.conv.k - 1


@dataclass(frozen=True)
class FcWeights:
    """fc.weight transposed (row j = input feature, column 2 + k = class k), then fc.bias."""

    fc: Linear
    title_row: int
    first_row: int

    def weight(self, k: int, j: int) -> tuple[int, int]:
        return self.first_row + j, 2 + k

    def bias(self, k: int) -> tuple[int, int]:
        return self.first_row + self.fc.c_in, 2 + k


def scale_formula(row: int) -> str:
    """s = γ/√(var + ε)."""
    return f"={a1(row, GAMMA)}/SQRT({a1(row, RUN_VAR)}+{a1(row, EPS)})"


def folded_bias_formula(row: int, conv_bias: bool) -> str:
    """b′ = β − s·mean, or β + s·(bias − mean) for a conv with its own bias."""
    beta, s, mean = a1(row, BETA), a1(row, SCALE), a1(row, RUN_MEAN)
    if conv_bias:
        return f"={beta}+{s}*({a1(row, CONV_BIAS)}-{mean})"
    return f"={beta}-{s}*{mean}"


def folded_weight_formula(raw: tuple[int, int], scale_row: int) -> str:
    """w·s: the raw weight times its output channel's scale."""
    return f"={a1(*raw)}*{a1(scale_row, SCALE, absolute=True)}"


# ---------------------------------------------------------------------------------------------
# MNIST net

PICK = (2, 2)  # B2: the yellow cell
TRUE_LABEL = (3, 2)
PREDICTED = (4, 2)
MEAN_CELL, STD_CELL = (5, 2), (6, 2)
PROB_HEADER_ROW = 8
PROB_FIRST_ROW = 9  # digit k's row is PROB_FIRST_ROW + k
DIGIT_COL, LOGIT_COL, EXP_COL, PROB_COL = 1, 2, 3, 4
CHART_ROW = 20
GAP_HEADER_ROW = 36
GAP_FIRST_ROW = 37
MAPS_COL = 6  # F: the feature maps start here
BAND_COLUMNS = 112  # a stage's maps wrap onto a new row of blocks past this many columns
INPUT_TOP = 3


@dataclass(frozen=True)
class Block:
    """One feature map on the net sheet: stage index (0 = input), channel, first cell, size."""

    stage: int
    channel: int
    top: int
    left: int
    size: int
    label: str

    def cell(self, i: int, j: int) -> tuple[int, int]:
        return self.top + i, self.left + j

    @property
    def range(self) -> str:
        return span(self.top, self.left, self.size, self.size)


@dataclass(eq=False)
class NetLayout:
    """Every cell of the three sheets for one architecture and number of images."""

    arch: Arch
    n_images: int
    shapes: list[Shape] = field(init=False)
    blocks: list[list[Block]] = field(init=False)  # [stage][channel]; stage 0 is the input
    band_rows: list[int] = field(init=False)  # the title row of each stage's band
    net_rows: int = field(init=False)  # the net sheet's rows end before this one
    convs: dict[str, ConvWeights] = field(init=False)
    fc: FcWeights | None = field(init=False)
    weights_rows: int = field(init=False)

    def __post_init__(self) -> None:
        self.shapes = self.arch.shapes()
        self._place_weights()
        self._place_blocks()

    # -- the weights sheet
    def _place_weights(self) -> None:
        row = ARCH_HEADER_ROW + len(self.arch.stages) + (self.arch.fc is not None) + 2
        self.convs = {}
        for stage in self.arch.stages:
            if isinstance(stage, Conv):
                folded_col = KERNELS_COL + stage.c_in * (stage.k + 1) + 1
                section = ConvWeights(stage, row, row + 2, folded_col)
                self.convs[stage.name] = section
                row = section.last_row + 3
        self.fc = None
        if self.arch.fc is not None:
            self.fc = FcWeights(self.arch.fc, row, row + 2)
            row += 3 + self.arch.fc.c_in
        self.weights_rows = row

    # -- the net sheet
    def _place_blocks(self) -> None:
        label = "input x = (pixel/255 − mean)/std"
        self.blocks = [[Block(0, 0, INPUT_TOP, MAPS_COL, IMAGE_SIZE, label)]]
        self.band_rows = [INPUT_TOP - 1]
        row = INPUT_TOP + IMAGE_SIZE + 1
        for s, stage in enumerate(self.arch.stages, start=1):
            shape = self.shapes[s]
            self.band_rows.append(row)
            per_row = max(1, BAND_COLUMNS // (shape.size + 1))
            blocks = []
            for c in range(shape.channels):
                line, place = divmod(c, per_row)
                top = row + 2 + line * (shape.size + 2)
                left = MAPS_COL + place * (shape.size + 1)
                blocks.append(Block(s, c, top, left, shape.size, f"{stage.name} ch {c}"))
            self.blocks.append(blocks)
            lines = -(-shape.channels // per_row)
            row += 2 + lines * (shape.size + 2)
        self.net_rows = row
        cells = sum(b.size * b.size for blocks in self.blocks for b in blocks)
        if cells > MAX_CELLS:
            raise ValueError(f"{cells:,} feature-map cells is more than {MAX_CELLS:,}")
        work = sum(
            self.shapes[s].channels * self.shapes[s].size ** 2 * stage.c_in * stage.k**2
            for s, stage in enumerate(self.arch.stages, start=1)
            if isinstance(stage, Conv)
        )
        if work > MAX_MULTIPLY_ADDS:
            raise ValueError(f"{work:,} multiply-adds is more than {MAX_MULTIPLY_ADDS:,}")

    @property
    def net_columns(self) -> int:
        """The last column the net sheet uses."""
        return max(b.left + b.size - 1 for blocks in self.blocks for b in blocks)

    @property
    def weights_columns(self) -> int:
        """The last column the weights sheet uses."""
        widest = [
            (s.folded_col if s.conv.bn else KERNELS_COL) + s.conv.c_in * (s.conv.k + 1)
            for s in self.convs.values()
        ]
        return max([len(ARCH_COLUMNS), FOLDED_BIAS, *widest]) + CLASSES

    @property
    def gap_channels(self) -> int:
        return self.shapes[-1].channels

    def gap_cell(self, c: int) -> tuple[int, int]:
        return GAP_FIRST_ROW + c, 2

    # -- formulas of the net sheet
    def input_formula(self, i: int, j: int) -> str:
        """Pixel p = 28·i + j + 1 of the picked row of MNIST digits, normalised."""
        pixels = digits_range(self.n_images, PIXEL_COL, PIXELS)
        pick = a1(*PICK, absolute=True)
        mean, std = a1(*MEAN_CELL, absolute=True), a1(*STD_CELL, absolute=True)
        p = IMAGE_SIZE * i + j + 1
        return f"=(INDEX({sheet_ref(DIGITS_SHEET)}!{pixels},{pick},{p})/255-{mean})/{std}"

    def stage_formula(self, s: int, c: int, i: int, j: int) -> str:
        """The formula of cell (i, j) of channel c's map in stage s (1-based).

        BatchNorm is folded into the conv before it: in eval mode a per-channel affine map
        y = s·x + b′, s = γ/√(var + ε), b′ = β + s·(bias − mean). When a max-pool sits between
        the conv and its BatchNorm (conv → pool → BN) the fold stays exact, as s·x + b′ is
        monotonic: max-pool then BN is max-pool of the folded map where s > 0 and min-pool of it
        where s < 0, so such a pool cell reads IF(s > 0, MAX(window), MIN(window)).
        """
        stage = self.arch.stages[s - 1]
        below = self.blocks[s - 1]
        if isinstance(stage, Conv):
            expr = self._conv_sum(stage, c, below, i, j)
        else:
            b = below[c]
            window = span(b.top + stage.k * i, b.left + stage.k * j, stage.k, stage.k)
            expr = f"MAX({window})"
            if stage.signed_by is not None:
                scale_row = self.convs[stage.signed_by].row(c)
                scale = f"{sheet_ref(WEIGHTS_SHEET)}!{a1(scale_row, SCALE, absolute=True)}"
                expr = f"IF({scale}>0,MAX({window}),MIN({window}))"
        return f"=MAX(0,{expr})" if stage.relu else f"={expr}"

    def _conv_sum(self, conv: Conv, o: int, below: list[Block], i: int, j: int) -> str:
        """Σ over input channels of the k×k window times the kernel (+ bias)."""
        kernels, bias = self._kernels(conv.name, o)
        k, letters = conv.k, LETTERS
        terms = []
        for b, kernel in zip(below, kernels, strict=True):
            r, c = b.top + i, b.left + j
            if k == 1:
                terms.append(f"{letters[c]}{r}*{kernel}")
            else:
                window = f"{letters[c]}{r}:{letters[c + k - 1]}{r + k - 1}"
                terms.append(f"SUMPRODUCT({window},{kernel})")
        return "+".join(terms) + bias

    @functools.cache  # noqa: B019 - a layout lives as long as its sheets are written or checked
    def _kernels(self, name: str, o: int) -> tuple[list[str], str]:
        """The absolute references to output channel o's kernels and bias on the weights sheet."""
        section, weights = self.convs[name], sheet_ref(WEIGHTS_SHEET)
        k = section.conv.k
        kernels = [
            f"{weights}!{span(*section.kernel(o, c), k, k, absolute=True)}"
            for c in range(section.conv.c_in)
        ]
        bias = section.bias_cell(o)
        return kernels, "" if bias is None else f"+{weights}!{a1(*bias, absolute=True)}"

    def gap_formula(self, c: int) -> str:
        return f"=AVERAGE({self.blocks[-1][c].range})"

    def logit_formula(self, k: int) -> str:
        if self.fc is None:
            return f"={a1(*self.gap_cell(k))}"
        n = self.fc.fc.c_in
        features = span(GAP_FIRST_ROW, 2, n, 1, absolute=True)
        column = span(*self.fc.weight(k, 0), n, 1, absolute=True)
        bias = a1(*self.fc.bias(k), absolute=True)
        weights = sheet_ref(WEIGHTS_SHEET)
        return f"=SUMPRODUCT({features},{weights}!{column})+{weights}!{bias}"

    @staticmethod
    def logits_range() -> str:
        return span(PROB_FIRST_ROW, LOGIT_COL, CLASSES, 1, absolute=True)

    def exp_formula(self, k: int) -> str:
        """e^(z − max z): the largest term is 1, so EXP never overflows."""
        return f"=EXP({a1(PROB_FIRST_ROW + k, LOGIT_COL)}-MAX({self.logits_range()}))"

    def prob_formula(self, k: int) -> str:
        exps = span(PROB_FIRST_ROW, EXP_COL, CLASSES, 1, absolute=True)
        return f"={a1(PROB_FIRST_ROW + k, EXP_COL)}/SUM({exps})"

    def predicted_formula(self) -> str:
        probs = span(PROB_FIRST_ROW, PROB_COL, CLASSES, 1, absolute=True)
        return f"=MATCH(MAX({probs}),{probs},0)-1"

    def true_label_formula(self) -> str:
        labels = digits_range(self.n_images, LABEL_COL, 1)
        return f"=INDEX({sheet_ref(DIGITS_SHEET)}!{labels},{a1(*PICK, absolute=True)})"
