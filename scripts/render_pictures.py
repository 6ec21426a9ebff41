"""Render the pictures of the workbook for the README and docs/workbook.md, as LibreOffice draws
them.

    python scripts/render_pictures.py [outputs/backprop.xlsx] [--sheet "LR 2"]
    python scripts/render_pictures.py --preset xor [--lr 2]
    python scripts/render_pictures.py --network docs/networks/circle_2-16-16-1.toml [--lr 0.2]
    python scripts/render_pictures.py --preset ravine --optimizer sgd momentum adam --lr 0.04
    python scripts/render_pictures.py --preset moons --batch-size 8 --lr 0.5

A picture is what LibreOffice shows or prints, not a drawing of our own: a copy of the workbook
gets the range as its print area on one page, then PDF export, pdftoppm and trimmed margins.
The files it writes are listed in main's docstring.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

from openpyxl.utils import get_column_letter

from backprop_xlsx.mlp import description, layout, sheetview
from backprop_xlsx.xlsx.fileio import atomic_output
from backprop_xlsx.xlsx.libreoffice import export_pdf, pdf_to_png
from backprop_xlsx.xlsx.parts import sheet_parts

SCREEN_WIDTH = 1310  # pixels of cells on a 1366-pixel screen: less the row numbers, scroll bar
SCREEN_ROWS = 15  # iterations under the frozen rows on a 768-pixel screen (17 px a row)


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


def screen_columns(sheet: layout.SheetLayout) -> int:
    """How many columns the first screen shows: the frozen ones, then scrolling ones until the
    screen is full."""
    pixels, n = 0, 0
    for column in sheet.columns:
        pixels += sheetview.column_pixels(column)
        if pixels > SCREEN_WIDTH:
            break
        n += 1
    return max(n, 1)


def with_print_area(book: Path, title: str, area: str, dst: Path) -> Path:
    """A copy of `book` whose sheet `title` prints only `area`, on one page, without print
    titles (the area starts at A1 anyway)."""
    with zipfile.ZipFile(book) as zin:
        workbook, names, parts = sheet_parts(zin)
        index, sheet_part = names.index(title), parts[title]
        with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
            for info in zin.infolist():
                data = zin.read(info)
                if info.filename == workbook:
                    text = data.decode()
                    local = f'localSheetId="{index}"'
                    text = re.sub(
                        rf'<definedName name="_xlnm.Print_Titles" {local}>.*?</definedName>',
                        "",
                        text,
                    )
                    ref = f"{layout.sheet_ref(title)}!" + "$" + area.replace(":", ":$")
                    ref = re.sub(r"\$([A-Z]+)(\d+)", r"$\1$\2", ref)
                    text = re.sub(
                        rf'(<definedName name="_xlnm.Print_Area" {local}>).*?(</definedName>)',
                        lambda m, ref=ref: m[1] + escape(ref) + m[2],
                        text,
                    )
                    data = text.encode()
                elif info.filename == sheet_part:
                    text = data.decode()
                    text = re.sub(r'fitToHeight="\d+"', 'fitToHeight="1"', text)
                    text = re.sub(r'fitToWidth="\d+"', 'fitToWidth="1"', text)
                    data = text.encode()
                zout.writestr(info, data)
    return dst


def render_area(book: Path, title: str, area: str, marker: str, out: Path, dpi: int) -> None:
    """`area` of sheet `title` on one page, as a picture; `marker` is text on that page."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = with_print_area(book, title, area, Path(tmp) / "copy.xlsx")
        pdf = export_pdf(copy, Path(tmp) / "copy.pdf")
        render(pdf, find_page(page_texts(pdf), marker), out, dpi)


def render_screens(
    book: Path, sheet: layout.SheetLayout, title: str, name: str, out_dir: Path, dpi: int
) -> None:
    """The first screen of LR sheet `title`, and its chart band alone."""
    last = get_column_letter(screen_columns(sheet))
    screen = f"A1:{last}{layout.FIRST_ROW + SCREEN_ROWS - 1}"
    marker = f"E_total, {title} (η ="  # the chart's title: on this sheet's page only
    render_area(book, title, screen, marker, out_dir / f"{name}.png", dpi)
    first = sheetview.frozen_columns(sheet) + 1
    band = (
        f"{get_column_letter(first)}{sheetview.CHART_ROW}:"
        f"{get_column_letter(sheetview.charts_end_column(sheet))}{sheetview.CHART_ROW}"
    )
    render_area(book, title, band, marker, out_dir / f"{name}_chart.png", dpi)


PRESET_LR = {"seed": 2.0, "mazur": 0.5, "xor": 2.0, "softmax": 1.0}


def render_network(
    network: description.Network,
    eta: float,
    name: str,
    out_dir: Path,
    dpi: int,
    optimizers: list[str],
    batch_size: int | None,
):
    """One network's first training sheet at `eta`: its first screen and its charts; with
    several optimizers, the Optimizers sheet's chart too."""
    from backprop_xlsx.mlp.config import check_batching
    from backprop_xlsx.mlp.workbook import build_workbook

    steps = network.steps or 100
    network = check_batching(network, batch_size, 0, steps)
    with tempfile.TemporaryDirectory() as tmp:
        book = Path(tmp) / "book.xlsx"
        build_workbook(network, [eta], steps, book, optimizers=optimizers)
        sheet = layout.SheetLayout(network, optimizer=optimizers[0])
        render_screens(book, sheet, layout.sheet_title(optimizers[0], eta), name, out_dir, dpi)
        if len(optimizers) > 1:
            pdf = export_pdf(book, Path(tmp) / "book.pdf")
            pages = page_texts(pdf)
            summary = find_page(pages, "one line per sheet")
            render(pdf, summary, out_dir / f"{name}_optimizers.png", dpi)


def main() -> None:
    """From a workbook (the seed's): outputs/lr_sheet.png (the first screen of one LR sheet,
    the cells LibreOffice shows at 100 % zoom on a 1366×768 display), lr_sheet_gradients.png
    (its printed page with the gradients), lr_chart.png (its chart band) and error_vs_lr.png.
    With --preset or --network: that network at one learning rate (its own steps), as
    preset_NAME.png or net_LAYERS.png and the same name with _chart; with several --optimizer
    also _optimizers (the Optimizers chart); with --batch-size B the names end in _bB. Margins
    are trimmed with Pillow (which torchvision brings); without it the pages stay whole."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workbook", nargs="?", type=Path, default=Path("outputs/backprop.xlsx"))
    parser.add_argument("--sheet", default="LR 2", help="the LR sheet to picture")
    parser.add_argument("--preset", help="picture this preset instead of a workbook")
    parser.add_argument("--network", type=Path, help="picture this network file instead")
    parser.add_argument("--lr", type=float, help="the network's learning rate to picture")
    parser.add_argument("--optimizer", nargs="+", default=["sgd"], help="with --preset/--network")
    parser.add_argument("--batch-size", type=int, help="with --preset/--network: mini-batches")
    parser.add_argument("--out-dir", type=Path, default=Path("outputs"))
    parser.add_argument("--dpi", type=int, default=110)
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if args.preset or args.network:
        if args.preset:
            network, name = description.preset(args.preset), f"preset_{args.preset}"
            eta = args.lr or PRESET_LR[args.preset]
        else:
            network = description.load(args.network)
            name = "net_" + "-".join(map(str, network.net.layers))
            eta = args.lr or (network.lr[len(network.lr) // 2] if network.lr else 0.1)
        if args.batch_size:
            name += f"_b{args.batch_size}"
        render_network(network, eta, name, args.out_dir, args.dpi, args.optimizer, args.batch_size)
        return

    render_screens(args.workbook, layout.SEED_LAYOUT, args.sheet, "lr_sheet", args.out_dir, 110)
    Path(args.out_dir / "lr_sheet_chart.png").replace(args.out_dir / "lr_chart.png")
    with tempfile.TemporaryDirectory() as tmp:
        pdf = export_pdf(args.workbook, Path(tmp) / "workbook.pdf")
        pages = page_texts(pdf)
        eta = args.sheet.removeprefix("LR ")
        table = find_page(pages, f"(η = {eta})")  # the sheet's first page holds its chart
        right = find_page(pages, "∂E/∂w1", after=table - 1)
        render(pdf, right, args.out_dir / "lr_sheet_gradients.png", args.dpi)
        summary = find_page(pages, layout.SUMMARY_SHEET.replace("LR", "learning rate"))
        chart = find_page(pages, "one line per learning rate", after=summary - 1)
        render(pdf, chart, args.out_dir / "error_vs_lr.png", args.dpi)


if __name__ == "__main__":
    main()
