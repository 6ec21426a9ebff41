"""bpxl: a 2-2-2 sigmoid network that trains by live formulas in a workbook, and its verifier."""

__version__ = "0.1.0"
