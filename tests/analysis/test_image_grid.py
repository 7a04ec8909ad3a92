"""Image grids: layout, size, clipping, and PNGs that an independent decoder (Pillow) reads."""

import io

import numpy as np
import pytest
from PIL import Image

from irevnet_tf.analysis import image_grid


def _cells(rows, columns, height, width, channels):
    values = np.arange(rows * columns * height * width * channels) % 200 + 20
    return values.reshape(rows, columns, height, width, channels).astype(np.float32)


def test_layout_by_hand():
    cells = _cells(2, 3, 2, 2, 1)
    grid = image_grid.tile_grid(cells, border=1)
    # 2 rows of 2 pixels and 3 borders; 3 columns of 2 pixels and 4 borders.
    assert grid.shape == (7, 10, 1) and grid.dtype == np.uint8
    assert np.all(grid[0] == 128) and np.all(grid[3] == 128) and np.all(grid[6] == 128)
    assert np.all(grid[:, 0] == 128) and np.all(grid[:, 3] == 128) and np.all(grid[:, 9] == 128)
    np.testing.assert_array_equal(grid[1:3, 1:3], cells[0, 0])
    np.testing.assert_array_equal(grid[1:3, 4:6], cells[0, 1])
    np.testing.assert_array_equal(grid[4:6, 7:9], cells[1, 2])
    assert image_grid.grid_size(2, 3, 2, 2, border=1) == (7, 10)


def test_values_are_clipped_and_rounded():
    cells = np.array([-5.0, 0.4, 127.6, 254.5, 300.0]).reshape(1, 1, 1, 5, 1)
    grid = image_grid.tile_grid(cells, border=0)
    np.testing.assert_array_equal(grid[0, :, 0], [0, 0, 128, 254, 255])  # Round half to even.


@pytest.mark.parametrize("channels, mode", [(1, "L"), (3, "RGB")])
def test_png_decodes_with_expected_size(tmp_path, channels, mode):
    cells = _cells(3, 4, 5, 6, channels)
    path = image_grid.write_grid_png(str(tmp_path / "grid.png"), cells)
    with Image.open(path) as image:
        assert image.mode == mode
        # width = 4 * 6 + 5 * 2, height = 3 * 5 + 4 * 2 (default border 2).
        assert image.size == (34, 23)
        pixels = np.asarray(image).reshape(23, 34, channels)
    np.testing.assert_array_equal(pixels[2:7, 2:8], cells[0, 0].astype(np.uint8))
    assert [path.name for path in tmp_path.iterdir()] == ["grid.png"]


def test_bad_channels_and_shapes():
    with pytest.raises(ValueError, match="1 \\(grey\\) or 3 \\(RGB\\)"):
        image_grid.tile_grid(np.zeros((1, 1, 4, 4, 4)))
    with pytest.raises(ValueError, match="rows, columns"):
        image_grid.tile_grid(np.zeros((4, 4, 1)))
    with pytest.raises(ValueError, match="uint8"):
        image_grid.encode_png(np.zeros((4, 4, 1), np.float32))


def test_encode_png_round_trip():
    image = (np.arange(48).reshape(4, 4, 3) * 5).astype(np.uint8)
    with Image.open(io.BytesIO(image_grid.encode_png(image))) as decoded:
        np.testing.assert_array_equal(np.asarray(decoded), image)
