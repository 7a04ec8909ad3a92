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
        train_step.make_partial_step(model, step="backward")
    with pytest.raises(ValueError, match="step"):
        train_step.make_partial_step(model, step="train")  # A whole step ships: shipped_steps.


def test_parameter_bytes_matches_the_published_count():
    # irevnet_cifar has 6,274,826 parameters (the paper's table; PyTorch counts no buffers).
    model = build_irevnet("irevnet_cifar")
    assert train_step.parameter_bytes(model.trainable_variables) == 4 * 6_274_826


@pytest.mark.parametrize("path", train_step.PATHS)
def test_measure_training_step_runs_on_a_tiny_model(path):
    result = train_step.measure_training_step(
        "irevnet_tiny", image_size=32, batch_size=4, warmup=1, repeats=2, memory_repeats=1,
        path=path)
    assert result["blocks"] == [1, 1, 1] and result["reversible"] and result["path"] == path
    assert len(result["step_seconds"]) == 2 and result["median_step_seconds"] > 0
    assert result["images_per_second"] == pytest.approx(4 / result["median_step_seconds"])
    assert result["gradient_bytes"] == result["parameter_bytes"] > 0
    assert result["steady_peak_bytes"] >= result["rss_before_steady_bytes"] > 0
    assert result["activation_bytes"] == (result["steady_peak_bytes"] - result["rss_traced_bytes"]
                                          - result["gradient_bytes"])


def test_trainer_step_is_the_trainers_loop():
    """shipped_steps.TrainerStep runs TrainingLoops: each call is one optimizer step of the
    trainer's task (its step counter advances, the weights move, the loss is the task's)."""
    import keras
    import numpy as np
    import tensorflow as tf

    from irevnet_tf.benchmarking import shipped_steps
    from irevnet_tf.training.optimizer import MomentumSGD

    model = build_irevnet("irevnet_tiny", num_classes=3)
    images = tf.random.normal([4, 32, 32, 3])
    labels = tf.constant([0, 1, 2, 0])
    # The task's loss before the step, computed here from the logits (sum over the batch).
    logits = model(images, training=True)
    expected = float(tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(
        labels, logits, from_logits=True)))
    before = [v.numpy() for v in model.trainable_variables]
    step = shipped_steps.TrainerStep(model, MomentumSGD(0.1, momentum=0.9), images, labels)
    loss_sum, _, count = step(images, labels)
    assert count == 4 and int(step.step_variable.numpy()) == 1
    assert loss_sum == pytest.approx(expected, rel=1e-4)
    assert any(np.any(v.numpy() != b) for v, b in zip(model.trainable_variables, before))


def test_xla_buffer_bytes_reads_the_largest_matching_dump(tmp_path):
    for name, total in (("module_1.a_inference_train_step_5.buffer-assignment.txt", 1234),
                        ("module_2.a_inference_train_step_9.buffer-assignment.txt", 99),
                        ("module_3.a_inference_other_1.buffer-assignment.txt", 10 ** 9)):
        (tmp_path / name).write_text(f"BufferAssignment:\nTotal bytes used: {total} (1KiB)\n")
    assert train_step.xla_buffer_bytes(str(tmp_path)) == 1234
    assert train_step.xla_buffer_bytes(str(tmp_path / "missing")) is None
