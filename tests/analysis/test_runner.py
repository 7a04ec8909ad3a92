"""run_analyses end to end, and every bad input failing before any work or output."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from irevnet_tf.analysis import analysis_data, figures, run_analyses
from irevnet_tf.analysis.runner import parse_analyses


def _png_shape(path):
    return tuple(tf.io.decode_png(tf.io.read_file(path)).shape)


def test_all_analyses_on_a_model_directory(tiny_model_dir, tmp_path, monkeypatch):
    output_dir = str(tmp_path / "analysis")
    drawn = _capture_figures(monkeypatch)
    results = run_analyses(tiny_model_dir, output_dir, num_examples=60, pairs=3, steps=5)
    _check_titles(drawn, "irevnet_tiny trained on digits", str(tiny_model_dir))
    # Only labelled figures by default: the unlabelled exact grids are asked for
    # (exact_grids=True, test_saved_model_export_end_to_end).
    assert results["reconstruction"]["grid_png"] is None
    assert [pair["strip_png"] for pair in results["interpolation"]["pairs"]] == [None] * 3
    overview_height, overview_width, _ = _png_shape(results["interpolation"]["overview_png"])
    assert overview_width > 2 * 5 * 80 and overview_height > 3 * 80  # Two enlarged panels.
    figure_height, figure_width, _ = _png_shape(results["reconstruction"]["figure_png"])
    assert figure_width > 8 * 80 and figure_height > 3 * 80
    rows = results["separation"]["rows"]
    assert [row["name"] for row in rows] == ["stage_0", "stage_1", "stage_2", "stage_3"]
    assert results["reconstruction"]["max_abs_error"] < 1e-2
    written = sorted(os.listdir(output_dir))
    assert written == sorted([
        "reconstructions.png", "reconstructions.json", "interpolations.png",
        "interpolations.json", "separation.csv", "separation.json", "separation.png",
        "summary.json"])
    # Every file written is reported once, and nothing else.
    assert sorted(os.path.basename(path) for path, _ in results["written"]) == written
    with open(results["summary_json"], encoding="utf-8") as handle:
        summary = json.load(handle)
    assert summary["analyses"] == ["reconstruction", "interpolation", "separation"]
    assert summary["separation"]["rows"][0]["name"] == "stage_0"
    assert summary["reconstruction"]["max_abs_error"] == pytest.approx(
        results["reconstruction"]["max_abs_error"])


def _capture_figures(monkeypatch):
    """The keyword arguments (title, caption) of every figure the analyses draw."""
    drawn = []
    for name in ("reconstruction_figure", "interpolation_figure", "separation_figure"):
        def draw(*args, _original=getattr(figures, name), **kwargs):
            drawn.append(kwargs)
            return _original(*args, **kwargs)

        monkeypatch.setattr(figures, name, draw)
    return drawn


def _check_titles(drawn, name, path):
    """Titles name the model, not its absolute path; the interpolation's caption explains
    what the representation walk shows."""
    assert len(drawn) == 3
    for kwargs in drawn:
        assert name in kwargs["title"] and path not in kwargs["title"], kwargs["title"]
    caption = drawn[1]["caption"]
    assert "not to be smooth" in caption and "ImageNet" in caption


def test_saved_model_export_end_to_end(serving_base_dir, tmp_path, monkeypatch):
    drawn = _capture_figures(monkeypatch)
    results = run_analyses(serving_base_dir, str(tmp_path / "out"), num_examples=40,
                           pairs=2, steps=4, exact_grids=True)
    assert results["reconstruction"]["max_abs_error"] < 1e-2
    assert len(results["separation"]["rows"]) == 4
    assert _png_shape(results["interpolation"]["pairs"][0]["strip_png"]) == (70, 4 * 32 + 5 * 2,
                                                                            1)
    assert _png_shape(results["reconstruction"]["grid_png"]) == (104, 8 * 32 + 9 * 2, 1)
    described = dict(results["written"])
    assert "unlabelled pixel grid" in described[results["reconstruction"]["grid_png"]]
    # This export records no run configuration: its directory and version name it.
    _check_titles(drawn, f"{os.path.basename(serving_base_dir)} version 10", serving_base_dir)


def _assert_nothing_written(directory):
    """A refused run leaves no output directory behind, not even an empty one."""
    assert not os.path.exists(directory)


def test_unknown_analysis_names_fail_first(tmp_path):
    with pytest.raises(ValueError, match="accepted: reconstruction, interpolation, separation"):
        run_analyses(str(tmp_path / "no_model"), str(tmp_path / "out"),
                     analyses="reconstructions,separation")
    _assert_nothing_written(tmp_path / "out")
    assert parse_analyses(" separation , reconstruction") == ["separation", "reconstruction"]
    with pytest.raises(ValueError, match="empty list"):
        parse_analyses("")


def test_model_path_with_nothing_in_it(tmp_path):
    with pytest.raises((ValueError, FileNotFoundError), match="missing_model"):
        run_analyses(str(tmp_path / "missing_model"), str(tmp_path / "out"))
    _assert_nothing_written(tmp_path / "out")
    (tmp_path / "empty_model").mkdir()
    with pytest.raises(ValueError, match="holds nothing to load"):
        run_analyses(str(tmp_path / "empty_model"), str(tmp_path / "out"))
    _assert_nothing_written(tmp_path / "out")


def test_unwritable_output_directory(tiny_model_dir, tmp_path):
    (tmp_path / "a_file").write_text("not a directory")
    with pytest.raises(ValueError, match="is not a writable directory"):
        run_analyses(tiny_model_dir, str(tmp_path / "a_file" / "out"))


def test_too_few_examples_per_class(tiny_model_dir, tmp_path):
    # 12 examples cannot give every one of 10 classes 2 examples in the training part.
    with pytest.raises(ValueError, match="at least 2 examples"):
        run_analyses(tiny_model_dir, str(tmp_path / "out"), num_examples=12)
    _assert_nothing_written(tmp_path / "out")
    # Without the separation analysis the classifiers need no such counts.
    results = run_analyses(tiny_model_dir, str(tmp_path / "out2"), num_examples=12,
                           analyses="reconstruction")
    assert set(results) == {"output_dir", "reconstruction", "summary_json", "written"}


def test_check_examples_per_class_by_hand():
    pixels = np.zeros((4, 2, 2, 1), np.float32)
    ok = analysis_data.AnalysisExamples("toy", pixels, np.array([0, 0, 1, 1]), pixels,
                                        np.array([1, 0, 1, 0]))
    analysis_data.check_examples_per_class(ok)
    short = analysis_data.AnalysisExamples("toy", pixels, np.array([0, 0, 1, 1]), pixels,
                                           np.array([1, 1, 1, 0]))
    with pytest.raises(ValueError, match=r"held-out part: class -> count \{0: 1\}"):
        analysis_data.check_examples_per_class(short)


def test_block_level_on_a_saved_model_fails_before_work(serving_base_dir, tmp_path):
    with pytest.raises(ValueError, match="per-block representations need a Keras model"):
        run_analyses(serving_base_dir, str(tmp_path / "out"), level="block")
    _assert_nothing_written(tmp_path / "out")


@pytest.mark.parametrize("arguments, message", [
    ({"steps": 1}, "steps must be an int >= 2"),
    ({"pairs": 0}, "pairs must be an int >= 1"),
    ({"level": "layer"}, "level must be one of stage, block"),
    ({"num_examples": 0}, "num_examples must be an int >= 1"),
])
def test_bad_options(tiny_model_dir, tmp_path, arguments, message):
    with pytest.raises(ValueError, match=message):
        run_analyses(tiny_model_dir, str(tmp_path / "out"), **arguments)
    _assert_nothing_written(tmp_path / "out")


def test_digits_pixels_follow_the_data_convention():
    images = np.zeros((1, 8, 8), np.uint8)
    images[0, 2:6, 3] = 16
    pixels = analysis_data.digits_to_pixels(images, 8, channels=3)
    assert pixels.shape == (1, 8, 8, 3)
    np.testing.assert_allclose(pixels[0, 2:6, 3], 255.0)  # Same size: bilinear is identity.
    assert pixels.min() == 0.0
    upsampled = analysis_data.digits_to_pixels(np.full((2, 8, 8), 8, np.uint8), 32)
    assert upsampled.shape == (2, 32, 32, 1)
    np.testing.assert_allclose(upsampled, 127.5, rtol=1e-6)
