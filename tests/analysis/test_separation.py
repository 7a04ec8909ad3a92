"""Separation measures against hand-derived answers, and the analysis on a trained-ish model."""

import itertools
import json
import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.decomposition import PCA
from sklearn.linear_model import Ridge
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

from irevnet_tf import build_irevnet
from irevnet_tf.analysis import analysis_data, run_analyses, separation
from irevnet_tf.model_files import RunConfig
from tests.analysis.model_fixtures import MEAN, STD

# A hand-made 2-D case. Training: class 0 at (0, 0), (0, 2), (0, 4); class 1 at (4, 2).
TRAIN_X = np.array([[0, 0], [0, 2], [0, 4], [4, 2]], np.float64)
TRAIN_Y = np.array([0, 0, 0, 1])
# Held-out points A..E.
TEST_X = np.array([[1, 2], [2.1, 2], [3, 10], [3, 2], [2.2, 2]], np.float64)
TEST_Y = np.array([0, 1, 1, 1, 0])


def test_ridge_classifier_hand_case():
    # Standardised training features: xs = (x - 1) / sqrt(3), ys = (y - 2) / sqrt(2); their
    # columns are orthogonal with X^T X = 4 I. Centred one-hot targets of class 0 are
    # (.25, .25, .25, -.75), so X^T Yc = (-sqrt(3), 0) for class 0 and the opposite for
    # class 1, the weights are -/+ sqrt(3) / (4 + l2) on xs and 0 on ys, and the scores are
    # s0 = .75 - (x - 1) / (4 + l2), s1 = .25 + (x - 1) / (4 + l2): class 1 iff
    # x > 1 + (4 + l2) / 4.
    # l2 = 1: threshold 2.25 -> predictions A0 B0 C1 D1 E0: 4 of 5 right (B wrong).
    assert separation.ridge_classifier_accuracy(TRAIN_X, TRAIN_Y, TEST_X, TEST_Y,
                                                l2=1.0) == pytest.approx(4 / 5)
    # l2 -> 0: threshold 2 -> A0 B1 C1 D1 E1: 4 of 5 right (E wrong).
    assert separation.ridge_classifier_accuracy(TRAIN_X, TRAIN_Y, TEST_X, TEST_Y,
                                                l2=1e-9) == pytest.approx(4 / 5)
    # l2 huge: the weights vanish, the intercept (3/4 vs 1/4) answers class 0: A, E right.
    assert separation.ridge_classifier_accuracy(TRAIN_X, TRAIN_Y, TEST_X, TEST_Y,
                                                l2=1e6) == pytest.approx(2 / 5)
    with pytest.raises(ValueError, match="l2"):
        separation.ridge_classifier_accuracy(TRAIN_X, TRAIN_Y, TEST_X, TEST_Y, l2=0.0)


def test_nearest_neighbour_hand_case():
    # Squared distances to the nearest class-0 / class-1 training point:
    # A (1, 2): 1 vs 9 -> 0 right; B (2.1, 2): 4.41 vs 3.61 -> 1 right;
    # C (3, 10): 45 (to (0, 4)) vs 65 -> 0 wrong; D (3, 2): 9 vs 1 -> 1 right;
    # E (2.2, 2): 4.84 vs 3.24 -> 1 wrong. 3 of 5.
    assert separation.nearest_neighbour_accuracy(TRAIN_X, TRAIN_Y, TEST_X,
                                                 TEST_Y) == pytest.approx(3 / 5)


def test_contraction_ratio_hand_case():
    # Within class 0: distances 2, 4, 2 -> mean 8/3. Between: (4, 2) to (0, 0), (0, 2),
    # (0, 4): sqrt(20), 4, sqrt(20) -> mean (4 + 2 sqrt(20)) / 3.
    # Ratio 8 / (4 + 4 sqrt(5)) = 2 / (1 + sqrt(5)).
    expected = 2 / (1 + math.sqrt(5))
    assert separation.contraction_ratio(TRAIN_X, TRAIN_Y) == pytest.approx(expected, rel=1e-12)
    # Scaling every feature leaves it unchanged.
    assert separation.contraction_ratio(7 * TRAIN_X, TRAIN_Y) == pytest.approx(expected,
                                                                               rel=1e-12)
    with pytest.raises(ValueError, match="pair"):
        separation.contraction_ratio(TRAIN_X[:3], TRAIN_Y[:3])


def test_principal_components_hand_case():
    # (+-4, 0), (0, +-1): variances 8 and 0.5; the first holds 8 / 8.5 = 94 %.
    cross = np.array([[4, 0], [-4, 0], [0, 1], [0, -1]], np.float64)
    assert separation.principal_components_for_variance(cross, 0.9) == 1
    assert separation.principal_components_for_variance(cross, 0.95) == 2
    # Rotated by 45 degrees each axis has variance 4.25: a per-axis count would say 2.
    rotation = np.array([[1, -1], [1, 1]]) / math.sqrt(2)
    assert separation.principal_components_for_variance(cross @ rotation.T, 0.9) == 1
    # (+-2, 0), (0, +-1): the first holds 2 / 2.5 = 80 % only.
    flatter = np.array([[2, 0], [-2, 0], [0, 1], [0, -1]], np.float64)
    assert separation.principal_components_for_variance(flatter, 0.9) == 2
    assert separation.principal_components_for_variance(np.ones((3, 2)), 0.9) == 0


def test_ridge_dual_form_matches_primal_solution():
    # More features (50) than examples (12): the code takes the dual form; compare with the
    # primal normal equations solved here.
    rng = np.random.default_rng(3)
    train_x, test_x = rng.normal(size=(12, 50)), rng.normal(size=(40, 50))
    train_y, test_y = np.arange(12) % 3, rng.integers(0, 3, 40)
    mean, std = train_x.mean(0), train_x.std(0)
    standard_train, standard_test = (train_x - mean) / std, (test_x - mean) / std
    targets = np.eye(3)[train_y]
    weights = np.linalg.solve(standard_train.T @ standard_train + 0.5 * np.eye(50),
                              standard_train.T @ (targets - targets.mean(0)))
    predictions = np.argmax(standard_test @ weights + targets.mean(0), axis=1)
    assert separation.ridge_classifier_accuracy(
        train_x, train_y, test_x, test_y, l2=0.5) == pytest.approx(np.mean(predictions == test_y))


def _pairwise_contraction(features, labels):
    within, between = [], []
    for i, j in itertools.combinations(range(len(labels)), 2):
        distance = np.linalg.norm(features[i] - features[j])
        (within if labels[i] == labels[j] else between).append(distance)
    return np.mean(within) / np.mean(between)


def test_separation_on_trained_model_end_to_end(tmp_path):
    """Trains irevnet_tiny on 16x16 digits for two epochs, then runs the separation analysis
    on its saved .keras file at block level; stage_0 (psi of the normalised input: a
    permutation of an affine map of the pixels) must score like the raw pixels do under
    scikit-learn's classifiers and PCA and a plain pairwise contraction."""
    shape = (16, 16, 1)
    keras.utils.set_random_seed(0)
    model = build_irevnet("irevnet_tiny", input_shape=shape, pixel_mean=MEAN, pixel_std=STD)
    examples = analysis_data.load_examples("digits", shape, num_examples=300)
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    history = model.fit(examples.train_pixels, examples.train_labels,  # Pixels.
                        batch_size=50, epochs=3, verbose=0)
    assert history.history["accuracy"][-1] > 0.5  # It did learn something.
    # A .keras file: it keeps every weight (see the report on TF checkpoints of IRevNet).
    model_path = str(tmp_path / "trained.keras")
    model.save(model_path)
    RunConfig(config_name="irevnet_tiny", overrides={"input_shape": list(shape)},
              image_size=shape[0], num_classes=10, mean=MEAN,
              std=STD).save(model_path + ".run_config.json")

    result = run_analyses(model_path, str(tmp_path / "out"), num_examples=300,
                          analyses="separation", level="block")["separation"]
    rows = result["rows"]
    assert [row["name"] for row in rows] == [
        "stage_0", "stage1_block1", "stage2_block1", "stage3_block1"]
    assert [row["dimensions"] for row in rows] == [256, 768, 768, 768]
    for row in rows:
        assert 0 <= row["linear_accuracy"] <= 1 and 0 <= row["nearest_neighbour_accuracy"] <= 1
        assert row["contraction_ratio"] > 0 and row["pca_components_90"] >= 1
    assert rows[-1]["linear_accuracy"] > result["majority_class_accuracy"] + 0.3

    train_x = examples.train_pixels.reshape(len(examples.train_pixels), -1).astype(np.float64)
    holdout_x = examples.holdout_pixels.reshape(len(examples.holdout_pixels), -1).astype(
        np.float64)
    scaler = StandardScaler().fit(train_x)
    ridge = Ridge(alpha=1.0).fit(scaler.transform(train_x), np.eye(10)[examples.train_labels])
    ridge_accuracy = np.mean(np.argmax(ridge.predict(scaler.transform(holdout_x)), 1) ==
                             examples.holdout_labels)
    neighbour = KNeighborsClassifier(n_neighbors=1, algorithm="brute").fit(
        train_x, examples.train_labels)
    neighbour_accuracy = np.mean(neighbour.predict(holdout_x) == examples.holdout_labels)
    components = PCA(n_components=0.9, svd_solver="full").fit(holdout_x).n_components_
    assert rows[0]["linear_accuracy"] == pytest.approx(ridge_accuracy)
    assert rows[0]["nearest_neighbour_accuracy"] == pytest.approx(neighbour_accuracy)
    assert rows[0]["pca_components_90"] == components
    assert rows[0]["contraction_ratio"] == pytest.approx(
        _pairwise_contraction(holdout_x, examples.holdout_labels), rel=1e-6)

    with open(result["csv"], encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    assert lines[0].split(",") == list(separation.COLUMNS) and len(lines) == 1 + len(rows)
    with open(result["json"], encoding="utf-8") as handle:
        assert json.load(handle)["rows"][-1]["name"] == "stage3_block1"
    plot = tf.io.decode_png(tf.io.read_file(result["plot_png"]))
    assert plot.shape[0] > 100 and plot.shape[1] > 100


def test_plot_is_skipped_without_matplotlib(tmp_path, monkeypatch):
    import sys

    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails.
    rows = [{"index": 0, "name": "stage_0", "linear_accuracy": 0.5,
             "nearest_neighbour_accuracy": 0.5, "contraction_ratio": 0.9,
             "pca_components_90": 3}]
    path = os.path.join(tmp_path, "separation.png")
    assert separation.plot_separation(rows, path) is None
    assert not os.path.exists(path)
