"""`python -m backprop_xlsx` is `bpxl`, for a checkout that is not pip-installed."""

from .cli import main

main()
