"""Tests of the training-step benchmark library (tiny models only; the real runs are manual)."""

import pytest

from irevnet_tf import build_irevnet
from irevnet_tf.benchmarking import train_step


def test_blocks_multiplier_and_image_size():
    kwargs = train_step.benchmark_model_kwargs("irevnet301", image_size=64,
                                               blocks_multiplier=2, reversible=False)
    assert kwargs["blocks"] == (12, 32, 144, 12)
    assert kwargs["input_shape"] == (64, 64, 3)
    assert kwargs["reversible"] is False


@pytest.mark.parametrize("multiplier", [0, 1.5, True])
def test_bad_blocks_multiplier(multiplier):
    with pytest.raises(ValueError, match="blocks_multiplier"):
        train_step.benchmark_model_kwargs("irevnet_tiny", blocks_multiplier=multiplier)


def test_bad_step_name():
    model = build_irevnet("irevnet_tiny")
    with pytest.raises(ValueError, match="step"):
        train_step.make_train_step(model, None, step="backward")


def test_parameter_bytes_matches_the_published_count():
    # irevnet_cifar has 6,274,826 parameters (the paper's table; PyTorch counts no buffers).
    model = build_irevnet("irevnet_cifar")
    assert train_step.parameter_bytes(model.trainable_variables) == 4 * 6_274_826


def test_measure_training_step_runs_on_a_tiny_model():
    result = train_step.measure_training_step(
        "irevnet_tiny", image_size=32, batch_size=4, warmup=1, repeats=2, memory_repeats=1)
    assert result["blocks"] == [1, 1, 1] and result["reversible"]
    assert len(result["step_seconds"]) == 2 and result["median_step_seconds"] > 0
    assert result["images_per_second"] == pytest.approx(4 / result["median_step_seconds"])
    assert result["gradient_bytes"] == result["parameter_bytes"] > 0
    assert result["steady_peak_bytes"] >= result["rss_before_steady_bytes"] > 0
    assert result["activation_bytes"] == (result["steady_peak_bytes"] - result["rss_traced_bytes"]
                                          - result["gradient_bytes"])


def test_xla_buffer_bytes_reads_the_largest_matching_dump(tmp_path):
    for name, total in (("module_1.a_inference_train_step_5.buffer-assignment.txt", 1234),
                        ("module_2.a_inference_train_step_9.buffer-assignment.txt", 99),
                        ("module_3.a_inference_other_1.buffer-assignment.txt", 10 ** 9)):
        (tmp_path / name).write_text(f"BufferAssignment:\nTotal bytes used: {total} (1KiB)\n")
    assert train_step.xla_buffer_bytes(str(tmp_path)) == 1234
    assert train_step.xla_buffer_bytes(str(tmp_path / "missing")) is None
