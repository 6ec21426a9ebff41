"""The verifier: the one source of values, and the checks of the LR, summary and Gradient check
sheets; it runs the trained net's check (cnn/) over the same values."""
