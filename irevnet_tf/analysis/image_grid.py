"""Image grids as PNG files, with nothing but numpy and TensorFlow (`tf.io.encode_png`).

A grid of `rows x columns` cells, each an `H x W x C` image with C = 1 (grey) or 3 (RGB),
separated and framed by `border` pixels of grey (128), is a PNG of exactly

    height = rows * H + (rows + 1) * border,   width = columns * W + (columns + 1) * border

pixels with C channels. Cell values are pixels in [0, 255]: they are clipped to that range
and rounded to uint8 (decoded images can stray slightly outside it).
"""

import numpy as np
import tensorflow as tf

from irevnet_tf.analysis import output_files
from irevnet_tf import validation

BORDER = 2
BORDER_VALUE = 128
PNG_CHANNELS = (1, 3)


def grid_size(rows, columns, height, width, border=BORDER):
    """`(grid_height, grid_width)` of a grid of `rows x columns` cells of `height x width`."""
    return (rows * height + (rows + 1) * border, columns * width + (columns + 1) * border)


def to_uint8(pixels):
    """Pixels in [0, 255] (any real dtype) as uint8: clipped, then rounded to nearest."""
    return np.clip(np.rint(np.asarray(pixels, np.float64)), 0, 255).astype(np.uint8)


def tile_grid(cells, border=BORDER):
    """Tiles `cells` of shape `(rows, columns, H, W, C)` into one uint8 image.

    Returns an array of shape `(*grid_size(rows, columns, H, W, border), C)`.
    """
    cells = np.asarray(cells)
    if cells.ndim != 5:
        raise ValueError("tile_grid: `cells` must have shape (rows, columns, height, width, "
                         f"channels), got {cells.shape}.")
    rows, columns, height, width, channels = cells.shape
    if channels not in PNG_CHANNELS:
        raise ValueError(f"tile_grid: images must have 1 (grey) or 3 (RGB) channels for PNG, "
                         f"got {channels}.")
    validation.check_int(border, "tile_grid: `border`", 0)
    grid = np.full((*grid_size(rows, columns, height, width, border), channels),
                   BORDER_VALUE, np.uint8)
    pixels = to_uint8(cells)
    for row in range(rows):
        top = border + row * (height + border)
        for column in range(columns):
            left = border + column * (width + border)
            grid[top:top + height, left:left + width] = pixels[row, column]
    return grid


def encode_png(image):
    """PNG bytes of a uint8 `(H, W, C)` image with C in (1, 3)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] not in PNG_CHANNELS or image.dtype != np.uint8:
        raise ValueError("encode_png: expected a uint8 (height, width, 1 or 3) image, got "
                         f"{image.dtype} {image.shape}.")
    return tf.io.encode_png(tf.constant(image)).numpy()


def write_grid_png(path, cells, border=BORDER):
    """Tiles `cells` (see `tile_grid`) and writes the PNG atomically; returns `path`."""
    return output_files.atomic_write_bytes(path, encode_png(tile_grid(cells, border)))
