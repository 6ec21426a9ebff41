"""bpxl: small neural networks that train by live formulas in a workbook, and their verifier.

`mlp` builds the workbook, `verify` proves one by recomputing it in NumPy, `handmade` grades
workbooks people made, `cnn` writes and checks the trained CNN's sheets, `xlsx` reads and writes
the packages; see docs/architecture.md.
"""

__version__ = "0.1.0"
