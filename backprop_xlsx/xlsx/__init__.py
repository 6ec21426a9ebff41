"""Reading, streaming, transplanting and recalculating xlsx packages; formulas; atomic files.

This layer knows nothing about networks: the mlp, cnn and verify packages build on it.
"""
