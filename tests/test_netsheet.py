"""The trained CNN inside the workbook: written, recalculated by LibreOffice, proved.

Independent witnesses: PyTorch itself (the model in float64, eval mode, forward hooks on the
module each feature map stands for) for every activation of two picked images, for `ours` and
`seed`, and a model with a max-pool between conv and BatchNorm and negative γ; LibreOffice as
the engine. Spoiled copies (a window shifted by one pixel, a wrong input channel, a typed-in
number) must be named by sheet and cell. Models train for a few batches on 512 images only.
"""

from __future__ import annotations

import copy
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from _spoil import rewrite, sheet_part

from backprop_xlsx.cnn import layout as L
from backprop_xlsx.cnn.check import check_cnn_sheets
from backprop_xlsx.errors import BpxlError
from backprop_xlsx.report import Report
from backprop_xlsx.verify.workbook import verify_workbook
from backprop_xlsx.xlsx.libreoffice import recalculate
from backprop_xlsx.xlsx.parts import sheet_parts
from backprop_xlsx.xlsx.read import Package, cell_number
from mnist import netsheet
from mnist.data import MEAN, STD, read_split, read_sums
from mnist.model import MODELS
from mnist.netmodel import read_model
from mnist.records import save_checkpoint

pytestmark = pytest.mark.torch  # see TORCH_MODULES in conftest.py

TOL = dict(rtol=1e-9, atol=1e-12)


class PoolFirst(nn.Module):
    """conv → max-pool → BatchNorm → ReLU (as the smaller default net), γ < 0 on some channels,
    where pooling the folded map must take the minimum."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(4),
                          nn.ReLU()),
            nn.Sequential(nn.Conv2d(4, 6, 3, bias=False), nn.BatchNorm2d(6), nn.ReLU()),
            nn.Conv2d(6, 10, 1, bias=False),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.features(x).mean(dim=(2, 3)), dim=1)


def train_briefly(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    """A few SGD batches on 512 training images: BatchNorm statistics and weights move."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for start in range(0, 512, 64):
        opt.zero_grad()
        loss = nn.functional.nll_loss(model(x[start : start + 64, None]), y[start : start + 64])
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def test_set(mnist_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    return netsheet.read_test_set(mnist_dir)


@pytest.fixture(scope="module")
def models(mnist_dir: Path) -> dict[str, nn.Module]:
    images, labels = read_split(mnist_dir, "train", read_sums(mnist_dir))
    x = (torch.from_numpy(images[:512].copy()).float() / 255 - MEAN) / STD
    y = torch.from_numpy(labels[:512].astype(np.int64))
    torch.manual_seed(0)
    out = {name: train_briefly(MODELS[name](), x, y) for name in ("ours", "seed")}
    pool_first = train_briefly(PoolFirst(), x, y)
    with torch.no_grad():
        pool_first.features[0][2].weight[::2] *= -1  # negative γ on channels 0 and 2
    out["pool_first"] = pool_first
    return out


@pytest.fixture(scope="module")
def books(
    tmp_path_factory: pytest.TempPathFactory, models, test_set, mnist_dir: Path
) -> dict[str, Path]:
    """ours and pool_first written directly (20 of the first 300 test images); seed through the
    CLI (100 images) from a checkpoint into a workbook that already has a sheet of the user's."""
    folder = tmp_path_factory.mktemp("netsheet")
    pixels, labels = test_set
    books = {}
    for name in ("ours", "pool_first"):
        books[name] = folder / f"{name}.xlsx"
        netsheet.write_net_sheets(models[name], pixels[:300], labels[:300], books[name], images=20)
    from openpyxl import Workbook

    wb = Workbook()
    wb.active.title = "Notes"
    wb.active["A1"] = "the user's own sheet"
    books["seed"] = folder / "seed.xlsx"
    wb.save(books["seed"])
    ckpt = folder / "seed.pt"
    state = {"config": {"model": "seed"}, "learner": {"model": models["seed"].state_dict()}}
    save_checkpoint(state, ckpt)
    args = ["--checkpoint", str(ckpt), "--workbook", str(books["seed"]), "--images", "100"]
    assert netsheet.main([*args, "--data-dir", str(mnist_dir)]) == 0
    return books


def sheet_xml(path: Path, title: str) -> tuple[str, str]:
    with zipfile.ZipFile(path) as z:
        part = sheet_parts(z)[2][title]
        return part, z.read(part).decode("utf-8")


def edit_sheets(src: Path, dst: Path, edits: dict[str, list[tuple[str, str]]]) -> Path:
    """A copy of `src` with regex edits (pattern, replacement) applied to sheets' XML."""
    by_part = {sheet_part(src, title): subs for title, subs in edits.items()}

    def edit(name: str, data: bytes) -> bytes:
        for pattern, replacement in by_part.get(name, []):
            text, n = re.subn(pattern, replacement, data.decode("utf-8"), count=1)
            assert n == 1, pattern
            data = text.encode("utf-8")
        return data

    return rewrite(src, dst, edit)


def pick(src: Path, dst: Path, image: int) -> Path:
    cell = L.a1(*L.PICK)
    return edit_sheets(
        src, dst, {L.NET_SHEET: [(rf'(<c r="{cell}"[^>]*>)<v>[^<]*</v>', rf"\g<1><v>{image}</v>")]}
    )


def torch_activations(model: nn.Module, pixels: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Every stage's maps and the probabilities, by PyTorch: float64, eval, forward hooks."""
    twin = copy.deepcopy(model).double().eval()
    net = read_model(twin)  # its sources are the twin's modules
    seen: dict[nn.Module, torch.Tensor] = {}
    hooks = [
        s.module.register_forward_hook(lambda m, i, o: seen.__setitem__(m, o.clone()))
        for s in net.sources
    ]
    x = ((torch.from_numpy(pixels).double() / 255 - MEAN) / STD).reshape(1, 1, 28, 28)
    with torch.no_grad():
        probs = twin(x).exp()[0].numpy()
        maps = []
        for source in net.sources:
            out = seen[source.module]
            for after in source.after:
                out = after(out)
            maps.append(out[0].numpy())
    for h in hooks:
        h.remove()
    return maps, probs


def sheet_values(book: Path, layout: L.NetLayout) -> tuple[list[np.ndarray], np.ndarray]:
    pkg = Package(book)
    try:
        cells = pkg.cells(L.NET_SHEET)
    finally:
        pkg.close()

    def number(row: int, col: int) -> float:
        value = cell_number(cells.get((row, col)))
        assert value is not None, L.a1(row, col)
        return value

    maps = [
        np.array([[[number(*b.cell(i, j)) for j in range(b.size)] for i in range(b.size)]
                  for b in blocks])
        for blocks in layout.blocks[1:]
    ]  # fmt: skip
    probs = np.array([number(L.PROB_FIRST_ROW + k, L.PROB_COL) for k in range(L.CLASSES)])
    return maps, probs


def verify(book: Path, computed: Path | None = None) -> Report:
    report = Report(str(book))
    pkg = Package(book)
    other = None if computed is None else Package(computed)
    try:
        check_cnn_sheets(pkg, report, other)
    finally:
        pkg.close()
        if other is not None:
            other.close()
    return report


def digits_row(book: Path, image: int) -> np.ndarray:
    pkg = Package(book)
    try:
        cells = pkg.cells(L.DIGITS_SHEET)
    finally:
        pkg.close()
    row = L.DIGIT_FIRST_ROW + image - 1
    return np.array([cell_number(cells[(row, L.PIXEL_COL + p)]) for p in range(L.PIXELS)])


@pytest.mark.parametrize("name", ["ours", "seed", "pool_first"])
def test_every_activation_equals_pytorch(name: str, books, models, soffice: str, tmp_path: Path):
    """LibreOffice's values of every feature map and probability = PyTorch's, for two images."""
    images = (1, 2) if name != "pool_first" else (1,)
    net = read_model(models[name])
    for image in images:
        picked = pick(books[name], tmp_path / f"pick{image}.xlsx", image)
        done = recalculate(picked, tmp_path / f"pick{image}_lo.xlsx")
        report = verify(done)
        assert report.ok, [f.text() for f in report.findings[:5]]
        pixels = digits_row(done, image).astype(np.uint8)
        layout = L.NetLayout(net.arch, _images(done))
        want_maps, want_probs = torch_activations(models[name], pixels)
        got_maps, got_probs = sheet_values(done, layout)
        assert len(got_maps) == len(want_maps) == len(net.arch.stages)
        for stage, got, want in zip(net.arch.stages, got_maps, want_maps, strict=True):
            np.testing.assert_allclose(got, want, **TOL, err_msg=f"{name} {stage.name}")
        np.testing.assert_allclose(got_probs, want_probs, **TOL)


def _images(book: Path) -> int:
    _, xml = sheet_xml(book, L.DIGITS_SHEET)
    return max(int(r) for r in re.findall(r'<row r="(\d+)"', xml)) - 1


def test_cli_keeps_the_users_sheet_and_every_wrong_digit(books, models, test_set):
    with zipfile.ZipFile(books["seed"]) as z:
        titles = list(sheet_parts(z)[2])
    assert titles == ["Notes", *L.SHEETS]
    pixels, labels = test_set
    pkg = Package(books["seed"])
    try:
        cells = pkg.cells(L.DIGITS_SHEET)
        notes = pkg.cells("Notes")
    finally:
        pkg.close()
    assert notes[(1, 1)].value == "the user's own sheet"
    held = {int(cell_number(cells[(r, 2)])) for r in range(2, 102)}
    assert len(held) == 100 and (103, 2) not in cells
    # The wrong digits come first by test index: every wrong one up to the last held one is held
    # (evaluating only that far keeps the test fast; the CLI evaluated all 10,000).
    up_to = max(held) + 1
    wrong = np.flatnonzero(netsheet.predict(models["seed"], pixels[:up_to]) != labels[:up_to])
    assert len(wrong) > 0 and set(wrong.tolist()) <= held


def test_spoiled_cells_are_named_and_batchnorm_is_live(books, models, soffice: str, tmp_path):
    """A shifted window, a wrong channel and a typed-in number are found, cell by cell; a
    changed γ changes the net (LibreOffice's conv1 ch 0 moves, NumPy follows, no finding)."""
    net = read_model(models["ours"])
    layout = L.NetLayout(net.arch, _images(books["ours"]))
    k = 1 + [s.name for s in net.arch.stages].index("conv2")  # its block; k - 1 feeds it
    conv2 = layout.blocks[k]
    shifted, channel, typed = conv2[0].cell(3, 3), conv2[1].cell(4, 4), conv2[2].cell(5, 5)
    # channel 1's map read where channel 0's belongs, in the first term of the sum
    window = [L.span(*layout.blocks[k - 1][c].cell(4, 4), 3, 3) for c in (0, 1)]
    wrong_channel = layout.stage_formula(k, 1, 4, 4).replace(window[0], window[1], 1)
    gamma_row = layout.convs["conv1"].row(0)

    def formula_cell(at: tuple[int, int], inner: str) -> tuple[str, str]:
        return (rf'(<c r="{L.a1(*at)}"[^>]*>)<f>[^<]*</f>', rf"\g<1>{inner}")

    def f(text: str) -> str:
        return "<f>" + text[1:].replace(">", "&gt;") + "</f>"

    edits = {
        L.NET_SHEET: [
            formula_cell(shifted, f(layout.stage_formula(k, 0, 3, 4))),
            formula_cell(channel, f(wrong_channel)),
            formula_cell(typed, "<v>0.5</v>"),
        ],
        L.WEIGHTS_SHEET: [
            (rf'(<c r="{L.a1(gamma_row, L.GAMMA)}"[^>]*>)<v>[^<]*</v>', r"\g<1><v>-2.5</v>")
        ],
    }
    spoiled = edit_sheets(books["ours"], tmp_path / "spoiled.xlsx", edits)
    done = recalculate(spoiled, tmp_path / "spoiled_lo.xlsx")
    report = verify(spoiled, done)
    named = {f.cell: f.problem for f in report.findings if f.sheet == L.NET_SHEET}
    assert "relative formula of block conv2 ch 0" in named[L.a1(*shifted)]
    assert "relative formula of block conv2 ch 1" in named[L.a1(*channel)]
    assert "typed-in value" in named[L.a1(*typed)]
    conv1 = {L.a1(*layout.blocks[1][0].cell(i, j)) for i in range(26) for j in range(26)}
    assert not conv1 & set(named), "conv1 ch 0 follows the changed γ in NumPy too"
    got, _ = sheet_values(done, layout)
    want, _ = torch_activations(models["ours"], digits_row(done, 1).astype(np.uint8))
    assert not np.allclose(got[0][0], want[0][0]), "γ changed: conv1 ch 0 must change"
    np.testing.assert_allclose(got[0][1:], want[0][1:], **TOL)


def test_a_bad_picker_is_a_finding(books, tmp_path: Path):
    cell = L.a1(*L.PICK)
    bad = edit_sheets(books["ours"], tmp_path / "bad.xlsx", {
        L.NET_SHEET: [(rf'(<c r="{cell}"[^>]*>)<v>[^<]*</v>', r"\g<1><v>9999</v>")],
    })  # fmt: skip
    report = verify(bad, bad)  # uncalculated on purpose: only the picker is looked at
    assert any(f.cell == cell and "picked image" in f.problem for f in report.findings)


@pytest.mark.parametrize(
    "layer, named",
    [
        (nn.AvgPool2d(2), "AvgPool2d"),
        (nn.Conv2d(10, 10, 3, padding=1), "Conv2d"),
        (nn.Sequential(nn.ReLU(), nn.BatchNorm2d(10)), "BatchNorm2d"),
    ],
)
def test_other_layers_get_one_clear_error(layer: nn.Module, named: str) -> None:
    model = MODELS["ours"]()
    model.features.append(layer)
    with pytest.raises(BpxlError, match=rf"layer features\.[\d.]+ is a {named}"):
        read_model(model)


def test_bad_checkpoint_is_one_line(tmp_path: Path, capsys) -> None:
    path = tmp_path / "x.pt"
    path.write_bytes(b"not a checkpoint")
    code = netsheet.main(["--checkpoint", str(path), "--workbook", str(tmp_path / "w.xlsx")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot load checkpoint")


def test_a_hostile_architecture_table_is_one_finding(books, tmp_path: Path) -> None:
    """Sizes are checked before anything is built from them: 10,000 channels is a finding."""
    row = L.ARCH_HEADER_ROW + 1
    edits = {L.WEIGHTS_SHEET: [(rf'(<c r="D{row}"[^>]*>)<v>[^<]*</v>', r"\g<1><v>10000</v>")]}
    report = verify(edit_sheets(books["ours"], tmp_path / "hostile.xlsx", edits))
    assert report.findings_total == 1
    assert "out channels must be a whole number from 1 to 64" in report.findings[0].problem


@pytest.mark.parametrize("name", ["ours", "seed"])
def test_the_architecture_table_reads_back(name: str) -> None:
    arch = read_model(MODELS[name]()).arch
    rows = [list(r) for r in L.arch_rows(arch)]
    assert L.arch_from_rows(rows) == arch


def test_never_calculated_sheets_are_recalculated_or_named(books, soffice: str) -> None:
    """As mnist.train leaves them: verify recalculates a copy; with --engine cached it says so."""
    assert verify_workbook(books["pool_first"]).ok  # LibreOffice behind the scenes
    report = Report(str(books["pool_first"]))
    pkg = Package(books["pool_first"])
    try:
        stats = check_cnn_sheets(pkg, report)
    finally:
        pkg.close()
    assert [f.problem for f in report.findings] == [
        "no computed values (never calculated): use --engine libreoffice"
    ]
    assert stats is not None and stats.formulas > 0 and stats.values == 0


def test_bpxl_verify_checks_the_net_beside_the_backprop_sheets(
    models, test_set, soffice: str, tmp_path: Path
) -> None:
    """The user's command: one workbook with the backprop sheets and the trained net."""
    import json

    from click.testing import CliRunner

    from backprop_xlsx.cli import cli
    from backprop_xlsx.mlp.description import preset
    from backprop_xlsx.mlp.workbook import build_workbook

    book = tmp_path / "both.xlsx"
    build_workbook(preset("seed"), [0.5, 2.0], 10, book)
    pixels, labels = test_set
    netsheet.write_net_sheets(models["ours"], pixels[:200], labels[:200], book, images=10)
    result = CliRunner().invoke(cli, ["verify", str(book), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["engine"] == "libreoffice" and report["cells_checked"] > 0
    assert report["cnn"]["values"] > 15_000 and report["cnn"]["max_rel"] < 1e-9  # 19,176 here
    only_net = CliRunner().invoke(cli, ["verify", str(books_only_net(tmp_path, models, test_set))])
    assert only_net.exit_code == 0, only_net.output
    assert "CNN sheets:" in only_net.output


def books_only_net(tmp_path: Path, models, test_set) -> Path:
    """A workbook holding the trained net's sheets and nothing of the backprop part."""
    book = tmp_path / "net-only.xlsx"
    pixels, labels = test_set
    netsheet.write_net_sheets(models["ours"], pixels[:100], labels[:100], book, images=5)
    return book


def test_the_picker_refuses_a_number_outside_the_images(books) -> None:
    """Excel and LibreOffice show the stop alert only with showErrorMessage="1"."""
    import xml.etree.ElementTree as ET

    _, xml = sheet_xml(books["ours"], L.NET_SHEET)
    ns = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
    rules = ET.fromstring(xml).findall("m:dataValidations/m:dataValidation", ns)
    (rule,) = [r for r in rules if r.get("sqref") == L.a1(*L.PICK)]
    assert rule.get("showErrorMessage") in ("1", "true")
    assert rule.get("errorStyle", "stop") == "stop"
    assert rule.get("allowBlank") in (None, "0", "false")
    assert (rule.get("type"), rule.get("operator")) == ("whole", "between")
    bounds = tuple(rule.findtext(f"m:formula{k}", namespaces=ns) for k in (1, 2))
    assert bounds == ("1", str(_images(books["ours"])))
    assert rule.get("errorTitle") and f"from 1 to {bounds[1]}" in rule.get("error", "")
