"""What Excel would say: Microsoft's Open XML SDK validator on every kind of workbook bpxl builds.

LibreOffice and Gnumeric forgive a lot that Excel answers with "We found a problem with some
content… Do you want us to try to recover?". The Open XML SDK is Microsoft's own reading of the
format (the schemas Office validates against, and its semantic rules); @ooxml-tools/validate runs
it as WebAssembly under Node, offline. Every finding fails the test unless it is one that Excel
itself accepts, each listed in ALLOWED with the reason.
"""

from __future__ import annotations

import json
import re
import subprocess
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _spoil import edit_part

from backprop_xlsx.mlp import description
from backprop_xlsx.mlp.workbook import build_workbook


@dataclass(frozen=True)
class Allowed:
    """A finding Excel accepts: matched by id, part, XPath and description (regexes)."""

    id: str
    part: str
    xpath: str
    description: str
    why: str

    def matches(self, finding: dict[str, Any]) -> bool:
        path = finding.get("path") or {}
        return (
            finding.get("id") == self.id
            and path.get("partUri") == self.part
            and re.fullmatch(self.xpath, path.get("xpath", "")) is not None
            and re.search(self.description, finding.get("description", "")) is not None
        )


ALLOWED = (
    Allowed(
        "Sch_UnexpectedElementContentExpectingComplex",
        "/xl/styles.xml",
        r"/x:styleSheet\[1\]/x:fonts\[1\]/x:font\[\d+\]",
        r"unexpected child element '[^']*/spreadsheetml/2006/main:color'",
        "openpyxl writes a font's children as <name> <family> <color> <sz> <scheme>; ECMA-376's "
        "CT_Font is an unbounded choice (any order), the SDK checks Office's own order, and "
        "Excel opens every workbook openpyxl saves with such fonts without a repair",
    ),
)


def unexplained(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in findings if not any(a.matches(f) for a in ALLOWED)]


def validate(command: list[str], paths: list[Path]) -> dict[str, list[dict[str, Any]]]:
    """Findings per file, from one validator run per file, two at a time (Node starts in ~3 s).

    The validator exits 0 whatever it finds; its JSON on stdout is the verdict."""

    def one(path: Path) -> list[dict[str, Any]]:
        done = subprocess.run(
            [*command, "--output-format", "json", str(path)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, f"{path.name}: {done.stderr[-2000:]}"
        findings = json.loads(done.stdout)
        assert isinstance(findings, list), done.stdout[:500]
        return findings

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip((p.stem for p in paths), pool.map(one, paths), strict=True))


def wide_network() -> description.Network:
    """4-24-3 tanh/softmax on 4 samples: over 702 columns, so column names reach three letters."""
    rng = np.random.default_rng(3)
    return description.from_mapping(
        {
            "layers": [4, 24, 3],
            "activations": ["tanh", "softmax"],
            "loss": "cross_entropy",
            "bias": True,
            "inputs": rng.uniform(-1, 1, (4, 4)).tolist(),
            "targets": np.eye(3)[[0, 1, 2, 1]].tolist(),
        }
    )


def spoil(src: Path, dst: Path) -> Path:
    """A copy whose first LR sheet has an element the schema does not know inside sheetData."""

    def edit(text: str) -> str:
        assert text.count("<sheetData>") == 1
        return text.replace("<sheetData>", "<sheetData><bogus/>")

    return edit_part(src, dst, "xl/worksheets/sheet2.xml", edit)


BOOKS = ("seed", "mazur", "xor", "softmax", "wide")


@pytest.fixture(scope="module")
def findings(
    ooxml_validate: list[str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, list[dict[str, Any]]]:
    """Every preset, a wide net, and a spoiled seed (which the validator must reject)."""
    folder = tmp_path_factory.mktemp("ooxml")
    paths = []
    for name in BOOKS:
        nw = wide_network() if name == "wide" else description.preset(name)
        path = folder / f"{name}.xlsx"
        build_workbook(nw, [0.5, 2.0], 3, path)
        paths.append(path)
    paths.append(spoil(paths[0], folder / "spoiled.xlsx"))
    return validate(ooxml_validate, paths)


@pytest.mark.parametrize("book", BOOKS)
def test_excel_would_open(book: str, findings: dict[str, list[dict[str, Any]]]) -> None:
    assert unexplained(findings[book]) == [], json.dumps(unexplained(findings[book]), indent=1)


def test_the_validator_sees_a_schema_error(findings: dict[str, list[dict[str, Any]]]) -> None:
    """The witness can fail: an unknown element in a sheet is named, with its part."""
    named = unexplained(findings["spoiled"])
    assert [f["path"]["partUri"] for f in named] == ["/xl/worksheets/sheet2.xml"], named
    assert "bogus" in named[0]["description"]


def test_every_allowance_is_still_needed(findings: dict[str, list[dict[str, Any]]]) -> None:
    """An allowance no workbook needs any more is removed, not kept as a blind spot."""
    seen = [f for book in BOOKS for f in findings[book]]
    for allowed in ALLOWED:
        assert any(allowed.matches(f) for f in seen), allowed.why


@pytest.mark.torch
def test_a_workbook_with_the_trained_net_and_mnist_sheets(
    ooxml_validate: list[str], mnist_dir: Path, tmp_path: Path
) -> None:
    """The whole product in one file: the CNN's sheets and the MNIST sheet transplanted into a
    workbook, then `bpxl build` into it, carrying them over."""
    import torch

    from mnist import netsheet, sheet
    from mnist.model import MODELS

    torch.manual_seed(0)
    model = MODELS["seed"]().eval()
    pixels, labels = netsheet.read_test_set(mnist_dir)
    book = tmp_path / "all.xlsx"
    netsheet.write_net_sheets(model, pixels[:200], labels[:200], book, images=10)
    epochs = [
        {"epoch": k, "train_loss": 0.5 / k, "train_acc": 90.0 + k, "test_loss": 0.4 / k,
         "test_acc": 91.0 + k, "lr": 0.1, "seconds": 10.0}
        for k in (1, 2)
    ]  # fmt: skip
    metrics = {"model": "seed", "params": 1000, "seed": 0, "device": "cpu", "epochs": epochs}
    sheet.write_workbook(metrics, book)
    build_workbook(description.preset("xor"), [0.5], 3, book)
    with zipfile.ZipFile(book) as z:
        assert len([n for n in z.namelist() if n.startswith("xl/worksheets/sheet")]) == 7
    found = validate(ooxml_validate, [book])["all"]
    assert unexplained(found) == [], json.dumps(unexplained(found), indent=1)
