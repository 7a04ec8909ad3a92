"""Interpolation: walking in the representation gives images, compared with walking in pixels.

For a pair of images (a, b) of different classes and t in linspace(0, 1, steps), the
representation row is decode((1 - t) Phi(a) + t Phi(b)) and the pixel row is
(1 - t) a + t b. `interpolations.png` is the labelled figure for people: the representation
walks and the pixel walks as two panels side by side, one row per pair (named by its
classes), one column per t (`figures.interpolation_figure`), and `interpolations.json`
lists the pairs, their classes, the t values and the files. With `exact_strips=True` (for
programs: the figure's cells are resampled) each pair is also written as an exact,
unlabelled pixel strip `interpolation_pair_K.png` of 2 rows (the representation row above
the pixel row) by `steps` columns. At t = 0 and 1 the representation row is
decode(Phi(a)) and decode(Phi(b)) exactly, i.e. the images themselves up to rounding.

In between, the representation walk is not expected to look like a blend: i-RevNet's Phi
is trained only to classify, never to be smooth, so a straight line between two Phis
can leave the set of Phis of natural images and decode to high-frequency (e.g.
checkerboard) patterns that the invertible down-sampling spreads over the image. The
paper's interpolations are of ImageNet models; small models on small images show this
more. `INTERPOLATION_CAPTION` says so under the figure.
"""

import os

import numpy as np

from irevnet_tf.analysis import figures, image_grid, output_files
from irevnet_tf import validation

OVERVIEW_FILE = "interpolations.png"
STRIP_FILE = "interpolation_pair_{}.png"
JSON_FILE = "interpolations.json"
INTERPOLATION_CAPTION = (
    "Between the end points the representation walk may leave the Phis of natural images: "
    "i-RevNet's Phi is trained to classify, not to be smooth, so a mixture can decode to "
    "high-frequency (checkerboard)\npatterns spread by the invertible down-sampling. They "
    "show what the representation keeps, not a defect of the inverse (t = 0 and 1 decode "
    "exactly). The paper's interpolations are of ImageNet models.")


def choose_pairs(labels, num_pairs):
    """`num_pairs` index pairs `(i, j)` with `labels[i] != labels[j]`, deterministically:
    pair k joins classes c[k mod C] and c[(k + 1) mod C] of the sorted classes c, taking the
    (k div C)-th example of each (cycling when a class runs out)."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if len(classes) < 2:
        raise ValueError(f"interpolation needs examples of at least 2 classes, got classes "
                         f"{classes.tolist()}.")
    members = {label: np.flatnonzero(labels == label) for label in classes}
    pairs = []
    for k in range(num_pairs):
        first = classes[k % len(classes)]
        second = classes[(k + 1) % len(classes)]
        round_number = k // len(classes)
        pairs.append((int(members[first][round_number % len(members[first])]),
                      int(members[second][round_number % len(members[second])])))
    return pairs


def interpolation_rows(model, pixels_a, pixels_b, steps):
    """`(representation_row, pixel_row, t)` for one pair: two (steps, H, W, C) float32 pixel
    arrays and the (steps,) t values."""
    validation.check_int(steps, "steps", 2, hint=" (the end points included)")
    t = np.linspace(0.0, 1.0, steps)
    # In float64 (whatever Phi's dtype, integer included) so that t = 0 and t = 1
    # reproduce Phi(a) and Phi(b) exactly.
    features = np.asarray(model.encode(np.stack([pixels_a, pixels_b])), np.float64)
    weights = t.reshape(-1, *([1] * (features.ndim - 1)))
    mixed = (1.0 - weights) * features[0] + weights * features[1]
    representation_row = np.asarray(model.decode(mixed), np.float32)
    pixel_row = ((1.0 - weights) * np.asarray(pixels_a, np.float64) +
                 weights * np.asarray(pixels_b, np.float64)).astype(np.float32)
    return representation_row, pixel_row, t


def run_interpolation(model, pixels, labels, output_dir, num_pairs=4, steps=8,
                      exact_strips=False):
    """Interpolates `num_pairs` pairs of `pixels` with `model` (an `InvertibleModel`) and
    writes the overview figure, the JSON and, with `exact_strips`, one exact pixel strip
    per pair; returns the report with the paths (a pair's `strip_png` is None without
    `exact_strips`)."""
    validation.check_int(num_pairs, "pairs", 1)
    pixels = np.asarray(pixels, np.float32)
    pairs = choose_pairs(labels, num_pairs)
    representation_rows, pixel_rows, records = [], [], []
    for number, (first, second) in enumerate(pairs):
        representation_row, pixel_row, t = interpolation_rows(
            model, pixels[first], pixels[second], steps)
        path = None
        if exact_strips:
            path = image_grid.write_grid_png(
                os.path.join(output_dir, STRIP_FILE.format(number)),
                np.stack([representation_row, pixel_row]))
        representation_rows.append(representation_row)
        pixel_rows.append(pixel_row)
        records.append({
            "strip_png": path,
            "indices": [first, second],
            "labels": [int(labels[first]), int(labels[second])],
            # How far the decoded end points are from the images themselves (pixel units).
            "endpoint_max_abs_error": float(max(
                np.max(np.abs(representation_row[0] - pixels[first])),
                np.max(np.abs(representation_row[-1] - pixels[second])))),
            # Share of decoded pixels outside [0, 255]: how far the walk leaves image space.
            "out_of_range_fraction": float(np.mean((representation_row < 0) |
                                                   (representation_row > 255))),
        })
    overview_path = figures.interpolation_figure(
        os.path.join(output_dir, OVERVIEW_FILE), representation_rows, pixel_rows,
        [record["labels"] for record in records], t,
        title=f"Interpolation between held-out images of two classes ({model.name})",
        caption=INTERPOLATION_CAPTION)
    report = {
        "pairs": records,
        "t": t.tolist(),
        "steps": steps,
        "strip_rows": ["decode((1 - t) Phi(a) + t Phi(b))", "(1 - t) a + t b"],
        "overview_png": overview_path,
        "model": model.source,
    }
    json_path = output_files.write_json(os.path.join(output_dir, JSON_FILE), report)
    return {**report, "json": json_path}
