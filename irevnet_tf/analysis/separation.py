"""Separation by depth: does the representation contract the classes and separate them linearly?

For each representation `stage_representations(pixels, level)` gives (stage_0 = after the
stem, i.e. the input itself rearranged; then after each stage, or after each block), with the
features flattened to vectors:

linear_accuracy
    Held-out accuracy of a closed-form ridge-regression classifier: features standardised
    with the training part's per-feature mean and standard deviation (population, ddof=0;
    constant features get std 1, so they become 0), targets one-hot; the intercept is left
    unpenalised (it equals the training mean of the targets), the weights minimise
    ||X W - (Y - mean Y)||^2 + l2 ||W||^2 (l2 = 1 by default), solved in float64 in the
    primal (D x D) or, when there are more features than examples, the equivalent dual
    (N x N) form. A test example gets the class with the largest score. Deterministic and
    cheap; not logistic regression.
nearest_neighbour_accuracy
    Held-out accuracy of 1-nearest-neighbour on the raw (unstandardised) features with the
    Euclidean distance; ties go to the earliest training example.
contraction_ratio
    On the held-out features: the mean Euclidean distance over all unordered pairs {i, j},
    i != j, of the same class divided by the mean over all pairs of different classes. Every
    pair counts once, so big classes weigh more. Below 1: classes are tighter than the space
    between them; it is scale invariant, so depths of different sizes compare.
pca_components_90
    On the held-out features: the smallest number k of principal components (eigenvalues of
    the covariance of the centred features, largest first) whose variance is at least 90 %
    of the total (up to a relative 1e-9 for rounding).

Writes `separation.csv`, `separation.json` and `separation.png` (the measures against depth,
`figures.separation_figure`); if matplotlib (a dependency) cannot be imported, the plot is
skipped with a logged warning.
"""

import os

import numpy as np
from absl import logging

from irevnet_tf import progress_log, validation
from irevnet_tf.analysis import output_files

CSV_FILE = "separation.csv"
JSON_FILE = "separation.json"
PLOT_FILE = "separation.png"
VARIANCE_FRACTION = 0.9
COLUMNS = ("index", "name", "height", "width", "channels", "dimensions", "linear_accuracy",
           "nearest_neighbour_accuracy", "contraction_ratio", "pca_components_90")


def _flatten(features):
    features = np.asarray(features, np.float64)
    return features.reshape(len(features), -1)


def standardise(train_features, test_features):
    """Both parts standardised with the training part's per-feature mean and std (ddof=0;
    a constant feature's std is taken as 1)."""
    train_features, test_features = _flatten(train_features), _flatten(test_features)
    mean = train_features.mean(axis=0)
    std = train_features.std(axis=0)
    std[std == 0] = 1.0
    return (train_features - mean) / std, (test_features - mean) / std


def ridge_classifier_accuracy(train_features, train_labels, test_features, test_labels,
                              l2=1.0):
    """Held-out accuracy of the ridge-regression classifier described in the module doc."""
    validation.check_number(l2, "l2", 0, low_open=True, what="> 0")
    train_x, test_x = standardise(train_features, test_features)
    classes, train_index = np.unique(np.asarray(train_labels), return_inverse=True)
    targets = np.eye(len(classes))[train_index]
    intercept = targets.mean(axis=0)
    centred_targets = targets - intercept
    examples, dimensions = train_x.shape
    if dimensions <= examples:
        weights = np.linalg.solve(train_x.T @ train_x + l2 * np.eye(dimensions),
                                  train_x.T @ centred_targets)
    else:  # (X^T X + l2 I)^-1 X^T = X^T (X X^T + l2 I)^-1: the N x N system is smaller.
        weights = train_x.T @ np.linalg.solve(train_x @ train_x.T + l2 * np.eye(examples),
                                              centred_targets)
    predictions = classes[np.argmax(test_x @ weights + intercept, axis=1)]
    return float(np.mean(predictions == np.asarray(test_labels)))


def nearest_neighbour_accuracy(train_features, train_labels, test_features, test_labels,
                               chunk=256):
    """Held-out accuracy of the Euclidean 1-nearest-neighbour classifier."""
    train_x, test_x = _flatten(train_features), _flatten(test_features)
    train_labels = np.asarray(train_labels)
    train_norms = np.sum(train_x ** 2, axis=1)
    predictions = []
    for start in range(0, len(test_x), chunk):
        block = test_x[start:start + chunk]
        # |a - b|^2 without |a|^2, which is the same for every candidate b.
        distances = train_norms[None, :] - 2.0 * block @ train_x.T
        predictions.append(train_labels[np.argmin(distances, axis=1)])
    return float(np.mean(np.concatenate(predictions) == np.asarray(test_labels)))


def pairwise_distances(features):
    """The (N, N) Euclidean distances between the rows of `features` (float64)."""
    x = _flatten(features)
    norms = np.sum(x ** 2, axis=1)
    squared = norms[:, None] + norms[None, :] - 2.0 * x @ x.T
    np.fill_diagonal(squared, 0.0)
    return np.sqrt(np.maximum(squared, 0.0))


def contraction_ratio(features, labels):
    """Mean within-class over mean between-class pairwise distance (see the module doc)."""
    labels = np.asarray(labels)
    distances = pairwise_distances(features)
    upper = np.triu(np.ones_like(distances, dtype=bool), k=1)
    same = labels[:, None] == labels[None, :]
    within, between = distances[upper & same], distances[upper & ~same]
    if not within.size or not between.size:
        raise ValueError("contraction_ratio needs at least one pair of the same class and one "
                         "of different classes.")
    mean_between = between.mean()
    return float(within.mean() / mean_between) if mean_between > 0 else float("inf")


def principal_components_for_variance(features, fraction=VARIANCE_FRACTION):
    """The smallest number of principal components holding `fraction` of the variance
    (0 when all examples are equal)."""
    validation.check_number(fraction, "fraction", 0, 1, low_open=True)
    x = _flatten(features)
    x = x - x.mean(axis=0)
    # X^T X (D x D) and X X^T (N x N) share their non-zero eigenvalues: use the smaller.
    gram = x.T @ x if x.shape[1] <= x.shape[0] else x @ x.T
    variances = np.clip(np.linalg.eigvalsh(gram)[::-1], 0.0, None)
    total = variances.sum()
    if total <= 0:
        return 0
    cumulative = np.cumsum(variances)
    return int(np.argmax(cumulative >= fraction * total * (1 - 1e-9)) + 1)


def separation_by_depth(model, examples, level="stage", l2=1.0, max_feature_bytes=2 ** 30,
                        progress_interval=10.0):
    """The measures of the module doc for each representation of `model` (an
    `InvertibleModel`) on `examples` (an `AnalysisExamples`): a list of row dicts (COLUMNS).

    Representations are computed in groups whose float32 features fit in
    `max_feature_bytes` (one forward pass over the examples per group), so that deep or
    wide models need not hold every depth's features at once. Progress (images through
    the model, then representations measured) is logged at most every `progress_interval`
    seconds.
    """
    names = model.representation_names(level)
    shapes = [output.shape[1:] for output in
              model.stage_representations(examples.holdout_pixels[:1], level)]
    examples_count = len(examples.train_pixels) + len(examples.holdout_pixels)
    groups, current, current_bytes = [], [], 0
    for index, shape in enumerate(shapes):
        size = examples_count * int(np.prod(shape)) * 4
        if current and current_bytes + size > max_feature_bytes:
            groups.append(current)
            current, current_bytes = [], 0
        current.append(index)
        current_bytes += size
    groups.append(current)

    rows = []
    forward = progress_log.WorkProgress("separation: representations of", examples_count *
                                        len(groups), "images", min_interval=progress_interval)
    measures = progress_log.WorkProgress("separation: measures of", len(names),
                                         "representations", min_interval=progress_interval)
    forwarded = 0
    for group in groups:
        train_features, forwarded = _representations(
            model, examples.train_pixels, level, group, forward, forwarded)
        holdout_features, forwarded = _representations(
            model, examples.holdout_pixels, level, group, forward, forwarded)
        if not rows:
            measures.restart()  # Time the measures, not the forward passes before them.
        for index, train_x, holdout_x in zip(group, train_features, holdout_features):
            height, width, channels = shapes[index]
            row = {
                "index": index, "name": names[index], "height": height, "width": width,
                "channels": channels, "dimensions": height * width * channels,
                "linear_accuracy": ridge_classifier_accuracy(
                    train_x, examples.train_labels, holdout_x, examples.holdout_labels, l2),
                "nearest_neighbour_accuracy": nearest_neighbour_accuracy(
                    train_x, examples.train_labels, holdout_x, examples.holdout_labels),
                "contraction_ratio": contraction_ratio(holdout_x, examples.holdout_labels),
                "pca_components_90": principal_components_for_variance(holdout_x),
            }
            rows.append(row)
            measures.update(len(rows), detail=names[index])
    return rows


def _representations(model, pixels, level, group, progress, done, chunk=256):
    """`model.stage_representations(pixels, level, group)` in chunks of `chunk` images, so
    that `progress` can report images, images/s and time left; returns the representations
    and the updated count of images done."""
    parts = []
    for start in range(0, len(pixels), chunk):
        parts.append(model.stage_representations(pixels[start:start + chunk], level, group))
        done += len(pixels[start:start + chunk])
        progress.update(done)
    return [np.concatenate([part[k] for part in parts]) for k in range(len(group))], done


def plot_separation(rows, path, title="", majority_class_accuracy=None):
    """Writes the measures against depth as a PNG (`figures.separation_figure`); returns
    `path`, or None (with a logged warning) when matplotlib cannot be imported."""
    try:
        import matplotlib  # noqa: F401 (a dependency; a broken install only loses the plot)
    except ImportError:
        logging.warning("matplotlib cannot be imported (pip install matplotlib): skipping "
                        "the separation plot %s; the numbers are in the CSV and JSON.", path)
        return None
    from irevnet_tf.analysis import figures

    return figures.separation_figure(path, rows, majority_class_accuracy, title=title)


def run_separation(model, examples, output_dir, level="stage", l2=1.0):
    """Computes `separation_by_depth` and writes the CSV, JSON and plot; returns the report
    with the written paths (`csv`, `json`, `plot_png`: None without matplotlib)."""
    rows = separation_by_depth(model, examples, level=level, l2=l2)
    csv_path = output_files.write_csv(os.path.join(output_dir, CSV_FILE), rows, COLUMNS)
    counts = np.bincount(np.unique(examples.holdout_labels, return_inverse=True)[1])
    plot_path = plot_separation(
        rows, os.path.join(output_dir, PLOT_FILE),
        title=f"Separation by depth: {model.name}, measured on {examples.dataset}",
        majority_class_accuracy=float(counts.max() / counts.sum()))
    report = {
        "rows": rows,
        "level": level,
        "ridge_l2": l2,
        "num_train": len(examples.train_labels),
        "num_holdout": len(examples.holdout_labels),
        # The accuracy of always answering the most common held-out class.
        "majority_class_accuracy": float(counts.max() / counts.sum()),
        "dataset": examples.dataset,
        "model": model.source,
        "plot_png": plot_path,
        "csv": csv_path,
    }
    json_path = output_files.write_json(os.path.join(output_dir, JSON_FILE), report)
    return {**report, "json": json_path}
