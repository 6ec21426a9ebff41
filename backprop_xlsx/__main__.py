"""`python -m backprop_xlsx` is `bpxl`, for a checkout that is not pip-installed."""

from backprop_xlsx.cli import main

main()
