"""Reconstruction: nothing is lost, decode(encode(x)) gives x back.

Writes `reconstructions.png`, a labelled figure for people (`figures.reconstruction_figure`:
rows named, columns titled with the class, the difference row with its colour bar and a
caption giving the amplification), and `reconstructions.json` with the amplification
factor and error statistics in pixel units over all the examples analysed. With
`exact_grid=True` (for programs: the figure's cells are resampled) also
`reconstructions_grid.png`, the same 3 rows by up to `grid_examples` columns as an exact,
unlabelled pixel grid (see `image_grid` for its size): the originals, decode(encode(x)),
and the amplified difference |decode(encode(x)) - x| multiplied by
`amplification_factor` = 255 / (largest |difference| among the shown images), so that the
largest difference is white.

    max_abs_error        max |d|                 (d = decode(encode(x)) - x, every pixel)
    max_relative_error   max |d| / max |x|       (the round trip as the package reports it)
    rms_error            sqrt(mean d^2)
    mean_abs_error       mean |d|
"""

import os

import numpy as np

from irevnet_tf.analysis import figures, image_grid, output_files

FIGURE_FILE = "reconstructions.png"
GRID_FILE = "reconstructions_grid.png"
JSON_FILE = "reconstructions.json"


def reconstruction_errors(originals, reconstructions):
    """Error statistics (float64, pixel units) of `reconstructions` against `originals`."""
    originals = np.asarray(originals, np.float64)
    difference = np.asarray(reconstructions, np.float64) - originals
    max_abs_error = float(np.max(np.abs(difference)))
    largest_pixel = float(np.max(np.abs(originals)))
    if largest_pixel > 0:
        max_relative_error = max_abs_error / largest_pixel
    else:  # All-black originals: only an exact reconstruction has a finite relative error.
        max_relative_error = 0.0 if max_abs_error == 0 else float("inf")
    return {
        "max_abs_error": max_abs_error,
        "max_relative_error": max_relative_error,
        "rms_error": float(np.sqrt(np.mean(difference ** 2))),
        "mean_abs_error": float(np.mean(np.abs(difference))),
    }


def amplified_difference(originals, reconstructions):
    """`(|reconstructions - originals| * factor, factor)` with factor = 255 / max |difference|
    (1 when there is no difference), so that the largest difference maps to 255 (white)."""
    difference = np.abs(np.asarray(reconstructions, np.float64) -
                        np.asarray(originals, np.float64))
    largest = float(np.max(difference)) if difference.size else 0.0
    factor = 255.0 / largest if largest > 0 else 1.0
    return difference * factor, factor


def pick_examples(labels, count):
    """Up to `count` indices that go round the classes in order (first example of each class,
    then the second, ...), so that a grid shows as many classes as it can."""
    labels = np.asarray(labels)
    members = [list(np.flatnonzero(labels == label)) for label in np.unique(labels)]
    picked = []
    while len(picked) < min(count, len(labels)):
        for indices in members:
            if indices and len(picked) < count:
                picked.append(int(indices.pop(0)))
    return picked


def run_reconstruction(model, pixels, labels, output_dir, grid_examples=8, exact_grid=False):
    """Reconstructs `pixels` with `model` (an `InvertibleModel`) and writes the figure, the
    JSON and, with `exact_grid`, the exact pixel grid.

    Returns the statistics with the written paths (`figure_png`, `grid_png` (None without
    `exact_grid`), `json`).
    """
    pixels = np.asarray(pixels, np.float32)
    # Cast: decode may return another dtype than the pixels (e.g. from an integer stream).
    reconstructions = np.asarray(model.decode(model.encode(pixels)), np.float32)
    statistics = reconstruction_errors(pixels, reconstructions)
    shown = pick_examples(labels, grid_examples)
    difference, factor = amplified_difference(pixels[shown], reconstructions[shown])
    grid_path = None
    if exact_grid:
        grid_path = image_grid.write_grid_png(
            os.path.join(output_dir, GRID_FILE),
            np.stack([pixels[shown], reconstructions[shown], difference]))
    figure_path = figures.reconstruction_figure(
        os.path.join(output_dir, FIGURE_FILE), pixels[shown], reconstructions[shown],
        [int(labels[index]) for index in shown], statistics["max_abs_error"], factor,
        title=f"Reconstruction by {model.name}: decode(encode(x)) gives x back")
    report = {
        **statistics,
        "amplification_factor": factor,
        "num_images": len(pixels),
        "image_shape": list(pixels.shape[1:]),
        "shown_indices": shown,
        "shown_labels": [int(labels[index]) for index in shown],
        "grid_rows": ["original", "decode(encode(x))", "|difference| x amplification_factor"],
        "units": "pixels in [0, 255]",
        "model": model.source,
    }
    json_path = output_files.write_json(os.path.join(output_dir, JSON_FILE), report)
    return {**report, "figure_png": figure_path, "grid_png": grid_path, "json": json_path}
