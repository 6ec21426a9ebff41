"""Time the CNN sheets (`MNIST digits`, `MNIST weights`, `MNIST net`) of the default model.

    python benchmarks/bench_netsheet.py [--checkpoint PT] [--data-dir DIR] [--images 100]
        [--repeat 3]

Into a default workbook: finding the wrong test digits, writing the three sheets (and the file
growth), LibreOffice's full recalculation with and without them, picking another image (`convert`
with recalculation on minus off: headless LibreOffice can only load, recalculate and save a
whole file), and `check_cnn_sheets`. Without --checkpoint the model is untrained: timings do not
depend on the weights. A script, not a timed test: the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _measure import timed

from backprop_xlsx.cli import DEFAULT_LRS
from backprop_xlsx.cnn import layout as L
from backprop_xlsx.cnn.check import check_cnn_sheets
from backprop_xlsx.cnn.sheets import build_sheets
from backprop_xlsx.mlp.description import preset
from backprop_xlsx.mlp.workbook import build_workbook
from backprop_xlsx.report import Report
from backprop_xlsx.xlsx.libreoffice import XLSX_FILTER, find_soffice, recalculate
from backprop_xlsx.xlsx.parts import sheet_parts
from backprop_xlsx.xlsx.read import Package
from backprop_xlsx.xlsx.transplant import transplant_sheets
from mnist import netsheet
from mnist.model import MODELS
from mnist.netmodel import read_model

PROFILE = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry"
 xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="OOXMLRecalcMode" \
oor:op="fuse"><value>{mode}</value></prop></item>
</oor:items>
"""


def convert(soffice: str, src: Path, folder: Path, recalc: bool) -> float:
    """Seconds for one headless load + save of `src`, recalculating on load or not (0 / 1)."""
    profile = folder / ("profile-recalc" if recalc else "profile-keep")
    user = profile / "user"
    if not user.exists():
        user.mkdir(parents=True)
        (user / "registrymodifications.xcu").write_text(PROFILE.format(mode=0 if recalc else 1))
    out = folder / "out"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [
        soffice,
        f"-env:UserInstallation={profile.resolve().as_uri()}",
        "--headless",
        "--norestore",
        "--convert-to",
        XLSX_FILTER,
        "--outdir",
        str(out),
        str(src),
    ]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "HOME": str(profile)})
    return time.perf_counter() - start


def repick(src: Path, dst: Path, image: int) -> Path:
    """A copy of `src` with another image number in the yellow cell."""
    cell = L.a1(*L.PICK)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        part = sheet_parts(zin)[2][L.NET_SHEET]
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == part:
                pattern = rf'(<c r="{cell}"[^>]*>)<v>[^<]*</v>'.encode()
                data, n = re.subn(pattern, rb"\g<1><v>%d</v>" % image, data, count=1)
                assert n == 1, "no picker cell"
            zout.writestr(info, data)
    return dst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="an mnist.train checkpoint")
    parser.add_argument("--data-dir", help="MNIST IDX folder (default $MNIST_DATA)")
    parser.add_argument("--images", type=int, default=netsheet.IMAGES)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    if args.checkpoint is not None:
        model, name = netsheet.model_from_checkpoint(args.checkpoint, None)
    else:
        model, name = MODELS["ours"]().eval(), "ours (untrained)"
    net = read_model(model)
    pixels, labels = netsheet.read_test_set(args.data_dir)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; model {name}")
    cells = sum(
        b.size * b.size for blocks in L.NetLayout(net.arch, args.images).blocks for b in blocks
    )
    print(f"net sheet: {len(net.arch.stages)} stages, {cells:,} map cells; {args.images} images")

    t_pick, digits = timed(netsheet.pick_digits, model, pixels, labels, args.images)
    print(f"model on 10,000 test images (finds the wrong ones): {t_pick:6.2f} s")
    soffice = find_soffice()
    with tempfile.TemporaryDirectory(prefix="bench-net-") as tmp:
        folder = Path(tmp)
        base = folder / "base.xlsx"
        build_workbook(preset("seed"), list(DEFAULT_LRS), 100, base)
        alone, book = folder / "alone.xlsx", folder / "book.xlsx"
        writes = []
        for _ in range(args.repeat):
            shutil.copyfile(base, book)
            start = time.perf_counter()
            build_sheets(net.arch, net.weights, digits, alone, "benchmark")
            transplant_sheets(alone, book, list(L.SHEETS))
            writes.append(time.perf_counter() - start)
        grow = (book.stat().st_size - base.stat().st_size) / 1e6
        print(f"writing the three sheets (build + transplant, best): {min(writes):6.2f} s")
        print(f"file growth: {grow:.2f} MB ({base.stat().st_size / 1e6:.2f} → "
              f"{book.stat().st_size / 1e6:.2f} MB)")  # fmt: skip
        if soffice is None:
            print("(LibreOffice not found: recalculation not timed)")
            return
        t_base, _ = timed(recalculate, base, folder / "base_lo.xlsx")
        t_book, done = timed(recalculate, book, folder / "book_lo.xlsx")
        t_alone, _ = timed(recalculate, alone, folder / "alone_lo.xlsx")
        print(f"LibreOffice full recalculation, workbook with the sheets: {t_book:6.2f} s")
        print(f"                                  the same without them: {t_base:6.2f} s")
        print(f"                                  the three sheets alone: {t_alone:6.2f} s")
        # Both on the recalculated file with another image picked: with recalculation off,
        # LibreOffice keeps the cached values, so the difference is the recalculation itself.
        picked = repick(folder / "alone_lo.xlsx", folder / "picked.xlsx", 2)
        on = min(convert(soffice, picked, folder, True) for _ in range(args.repeat))
        off = min(convert(soffice, picked, folder, False) for _ in range(args.repeat))
        print(
            f"picking another image: load+recalc+save {on:.2f} s − load+save {off:.2f} s"
            f" = recalculation {on - off:.2f} s"
        )
        report = Report(str(done))
        pkg = Package(done)
        t_check, stats = timed(check_cnn_sheets, pkg, report)
        pkg.close()
        verdict = "ok" if report.ok else f"{report.findings_total} FINDINGS"
        print(
            f"check_cnn_sheets on the recalculated workbook: {t_check:6.2f} s, "
            f"{stats.values:,} values, max rel {stats.max_rel:.1e}, {verdict}"
        )


if __name__ == "__main__":
    main()
