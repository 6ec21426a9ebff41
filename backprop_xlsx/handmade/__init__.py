"""Grading of hand-made 2-2-2 backprop workbooks: the assignment's tables, wherever they sit.

`tables` finds iteration tables by their header row and reads their cells, `eta` finds the
learning rate the weight updates read, `grade` checks every formula's meaning and every value,
`report` prints one workbook's findings or a class summary.
"""
