"""The MLP workbook: the network math, network files and presets, the layout, the sheets."""
