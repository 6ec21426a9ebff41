"""The trained CNN's sheets: architecture and layout, NumPy forward pass, and their check.

No torch here: the conversion from an nn.Module lives in mnist/.
"""
