"""Reading tools without Qt: measurement scale and geometry, ROI statistics, orientation,
annotations and their private store, and the layout of a full-resolution export.

Coordinates are the image view's: ``x`` = column, ``y`` = row, continuous, one unit per pixel,
pixel ``(row, col)`` covering ``[col, col + 1) x [row, row + 1)`` (its centre at +0.5).
"""
