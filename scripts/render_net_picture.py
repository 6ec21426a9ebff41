"""Render the README's picture of the MNIST net sheet, as LibreOffice draws it.

    python scripts/render_net_picture.py WORKBOOK [--out outputs/mnist_net.png] [--dpi 110]

The printed page of `MNIST net` (its print area: the picked digit, the probabilities with their
chart, and the first layer's feature maps), after LibreOffice recalculated the workbook:
headless PDF export, pdftoppm, margins trimmed (render_pictures.py's helpers).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from render_pictures import find_page, page_texts, render

from backprop_xlsx.xlsx.libreoffice import export_pdf

TITLE = "The trained net classifies one digit"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workbook", type=Path)
    parser.add_argument("--out", type=Path, default=Path("outputs/mnist_net.png"))
    parser.add_argument("--dpi", type=int, default=110)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pdf = export_pdf(args.workbook, Path(tmp) / "workbook.pdf")
        render(pdf, find_page(page_texts(pdf), TITLE), args.out, args.dpi)


if __name__ == "__main__":
    main()
