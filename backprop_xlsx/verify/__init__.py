"""The verifier: the report, the source of values, and the checks of the LR and summary sheets."""
