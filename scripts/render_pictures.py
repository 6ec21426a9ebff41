"""Render the README's pictures of the workbook, as LibreOffice draws them.

    python scripts/render_pictures.py [outputs/backprop.xlsx] [--sheet "LR 2"]
    python scripts/render_pictures.py --preset xor [--lr 2]

Writes outputs/lr_sheet.png (the top of one LR sheet), outputs/lr_chart.png (its E_total chart)
and outputs/error_vs_lr.png (the Error vs LR chart): headless PDF export, then pdftoppm, then the
white margins trimmed (Pillow, which torchvision brings; without it the pages stay whole).
With --preset, builds that preset at one learning rate (its own steps) and writes
outputs/preset_NAME.png (the page of its LR sheet with the outputs, E_total and δ) and
outputs/preset_NAME_chart.png (its outputs-per-sample chart, or its E_total chart for one
sample).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

from backprop_xlsx import layout
from backprop_xlsx.fileio import atomic_output
from backprop_xlsx.libreoffice import export_pdf, pdf_to_png


def page_texts(pdf: Path) -> list[str]:
    """The text of every page, to find which page shows what."""
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    return text.split("\f")


def find_page(pages: list[str], marker: str, after: int = 0) -> int:
    """1-based number of the first page from `after` whose text contains `marker`."""
    for number, text in enumerate(pages[after:], start=after + 1):
        if marker in text:
            return number
    raise SystemExit(f"error: no page of the PDF shows {marker!r}")


def render(pdf: Path, page: int, out: Path, dpi: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (png,) = pdf_to_png(pdf, Path(tmp) / "page", dpi=dpi, first_page=page, last_page=page)
        try:
            from PIL import Image, ImageChops
        except ImportError:
            data = png.read_bytes()
        else:
            image = Image.open(png).convert("RGB")
            background = Image.new("RGB", image.size, "white")
            box = ImageChops.difference(image, background).getbbox()
            if box:
                pad = 12
                image = image.crop(
                    (
                        max(box[0] - pad, 0),
                        max(box[1] - pad, 0),
                        min(box[2] + pad, image.width),
                        min(box[3] + pad, image.height),
                    )
                )
            png.unlink()
            image.save(png)
            data = png.read_bytes()
        with atomic_output(out) as tmp_out:
            tmp_out.write_bytes(data)
        print(f"wrote {out} (page {page})")


PRESET_LR = {"seed": 2.0, "mazur": 0.5, "xor": 2.0, "softmax": 1.0}


def render_preset(name: str, eta: float | None, out_dir: Path, dpi: int) -> None:
    """One preset's LR sheet as LibreOffice prints it: the table's first page, and its chart."""
    from backprop_xlsx import description
    from backprop_xlsx.writer import build_workbook

    network = description.preset(name)
    eta = eta if eta is not None else PRESET_LR[name]
    with tempfile.TemporaryDirectory() as tmp:
        book = Path(tmp) / f"{name}.xlsx"
        build_workbook(network, [eta], network.steps or 100, book)
        pdf = export_pdf(book, Path(tmp) / f"{name}.pdf")
        pages = page_texts(pdf)
        title = layout.lr_sheet_title(eta)
        table = find_page(pages, "change it and this sheet recomputes")
        # the page of the table that shows the outputs, E_total and the first δ columns
        shown = find_page(pages, "E_total", after=table - 1)
        render(pdf, shown, out_dir / f"preset_{name}.png", dpi)
        chart = find_page(pages, f"E_total, {title}", after=table)
        if network.samples > 1:  # the outputs chart prints on the page after the E_total chart
            chart += 1
        render(pdf, chart, out_dir / f"preset_{name}_chart.png", dpi)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workbook", nargs="?", type=Path, default=Path("outputs/backprop.xlsx"))
    parser.add_argument("--sheet", default="LR 2", help="the LR sheet to picture")
    parser.add_argument("--preset", help="picture this preset instead of a workbook")
    parser.add_argument("--lr", type=float, help="the preset's learning rate to picture")
    parser.add_argument("--out-dir", type=Path, default=Path("outputs"))
    parser.add_argument("--dpi", type=int, default=110)
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if args.preset:
        render_preset(args.preset, args.lr, args.out_dir, args.dpi)
        return

    with tempfile.TemporaryDirectory() as tmp:
        pdf = export_pdf(args.workbook, Path(tmp) / "workbook.pdf")
        pages = page_texts(pdf)
        eta = args.sheet.removeprefix("LR ")
        chart = find_page(pages, f"(η = {eta})")  # the sheet's chart prints after its table
        left = max(n for n, text in enumerate(pages[: chart - 1], 1) if "change it" in text)
        right = find_page(pages, "∂E/∂w1", after=left - 1)
        render(pdf, left, args.out_dir / "lr_sheet.png", args.dpi)
        render(pdf, right, args.out_dir / "lr_sheet_gradients.png", args.dpi)
        render(pdf, chart, args.out_dir / "lr_chart.png", args.dpi)
        summary = find_page(pages, layout.SUMMARY_SHEET.replace("LR", "learning rate"))
        chart = find_page(pages, "one line per learning rate", after=summary - 1)
        render(pdf, chart, args.out_dir / "error_vs_lr.png", args.dpi)


if __name__ == "__main__":
    main()
