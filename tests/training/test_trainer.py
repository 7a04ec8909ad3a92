"""The trainer end to end on a small learnable in-test data set (tests/training/fake_data.py):
training and evaluation, the model directory, summaries, resuming, refusals and NaN."""

import glob
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from irevnet_tf import model_files as model_dir_lib
from irevnet_tf.training import trainer
from irevnet_tf.training.errors import CheckpointMismatchError, NonFiniteLossError
from tests.helpers.events import read_events
from tests.training import fake_data

INFO = fake_data.FakeInfo()
OPTIONS = dict(config="irevnet_tiny", dataset="fake", batch_size=8, steps_per_loop=6,
               eval_every=12, checkpoint_every=12, eval_steps=2, base_learning_rate=3.2,
               lr_decay_steps=(18,), weight_decay=1e-4, summary_images=3, seed=5,
               deterministic=True)


def run(model_dir, info=INFO, builder=None, **options):
    return trainer.train(model_dir=str(model_dir), dataset_builder=builder or
                         fake_data.make_builder(info), dataset_info=info,
                         **{**OPTIONS, **options})


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("run") / "model"
    result = run(model_dir, train_steps=24)
    return model_dir, result


def test_trains_and_evaluates(finished_run):
    model_dir, result = finished_run
    assert result["step"] == result["total_steps"] == 24
    assert not result["preempted"]
    losses = [float(v) for _, v, _ in read_events(model_dir / "train")["loss"]]
    assert len(losses) == 4
    assert losses[-1] < 0.5 * losses[0], losses
    assert result["eval_top1"] >= 0.9
    assert result["eval_examples"] == 2 * 8


def test_model_directory_records_the_run(finished_run):
    model_dir, result = finished_run
    run_config = model_dir_lib.RunConfig.load(str(model_dir / "run_config.json"))
    assert run_config.config_name == "irevnet_tiny"
    assert run_config.overrides == {"num_classes": 4, "input_shape": [16, 16, 3]}
    assert (run_config.dataset, run_config.image_size, run_config.num_classes) == ("fake", 16, 4)
    assert run_config.mean == INFO.mean and run_config.std == INFO.std
    assert run_config.extra["flags"]["batch_size"] == 8
    assert run_config.extra["plan"]["total_steps"] == 24
    names = sorted(os.path.basename(p) for p in glob.glob(str(model_dir / "checkpoints/*.index")))
    assert names == ["ckpt-12.index", "ckpt-24.index"]
    assert result["checkpoint"].endswith("ckpt-24")
    sidecar = json.loads((model_dir / "model.keras.run_config.json").read_text())
    assert sidecar["config_name"] == "irevnet_tiny"
    assert not glob.glob(str(model_dir / ".tmp-*"))


def test_restored_models_reproduce_the_evaluation(finished_run):
    """Top-1 on the evaluated examples, recomputed with numpy from restored models."""
    model_dir, result = finished_run
    from_dir, _ = model_dir_lib.restore_model(str(model_dir))
    from_keras, run_config = model_dir_lib.restore_model(str(model_dir / "model.keras"))
    assert run_config.num_classes == 4
    batches = fake_data.batches(INFO.eval_split, INFO, 16, 16)
    images, labels = next(batches)
    logits = from_dir(images, training=False).numpy()
    np.testing.assert_allclose(from_keras(images, training=False), logits, rtol=1e-5, atol=1e-5)
    assert np.mean(logits.argmax(-1) == labels) == pytest.approx(result["eval_top1"])
    assert trainer.weights_digest(from_dir) == result["weights_digest"]


def test_summaries(finished_run):
    model_dir, _ = finished_run
    train_events = read_events(model_dir / "train")
    for tag in ("loss", "accuracy", "learning_rate", "images_per_second"):
        assert [step for step, _, _ in train_events[tag]] == [6, 12, 18, 24], tag
    rates = [float(v) for _, v, _ in train_events["learning_rate"]]
    # The rate of each loop's last step (steps count from 0): 0.1 (3.2 * 8 / 256) up to
    # step 17, 0.01 from the boundary at 18.
    np.testing.assert_allclose(rates, [0.1, 0.1, 0.1, 0.01], rtol=1e-5)
    eval_events = read_events(model_dir / "eval")
    for tag in ("top1_accuracy", "top5_accuracy", "loss", "reconstruction_max_error_pixels"):
        assert [step for step, _, _ in eval_events[tag]] == [12, 24], tag
        assert eval_events[tag][0][2] == "scalars"
    step, tensor, plugin = eval_events["input_and_reconstruction"][-1]
    assert plugin == "images" and tensor[:2].tolist() == [b"32", b"16"]
    shown = tf.io.decode_png(tensor[2]).numpy() / 255.0
    image, _ = fake_data.example(0, INFO.eval_split, INFO, 16)
    pixels = np.clip(image / 255.0, 0, 1)  # The data are pixels, as the model takes them.
    np.testing.assert_allclose(shown[:, :16], pixels, atol=0.6 / 255)   # the input
    np.testing.assert_allclose(shown[:, 16:], pixels, atol=0.6 / 255)   # its reconstruction
    assert len(tensor) == 2 + 3


def test_resumes_from_the_last_checkpoint(finished_run, tmp_path):
    model_dir, _ = finished_run
    shutil.copytree(model_dir, tmp_path / "model")
    result = run(tmp_path / "model", train_steps=30)
    assert result["step"] == 30 and result["checkpoint"].endswith("ckpt-30"), result
    steps = [step for step, _, _ in read_events(tmp_path / "model" / "train")["loss"]]
    assert steps[-1] == 30 and 25 not in steps
    assert result["images_per_second"] is not None


def test_refuses_a_different_configuration(finished_run):
    model_dir, _ = finished_run
    with pytest.raises(CheckpointMismatchError, match="config_name: recorded 'irevnet_tiny', "
                                                      "now 'irevnet_small'"):
        run(model_dir, train_steps=30, config="irevnet_small")
    with pytest.raises(CheckpointMismatchError, match="--precision"):
        run(model_dir, train_steps=30, precision="mixed_float16")


def test_refuses_a_checkpoint_that_does_not_fit(finished_run, tmp_path):
    model_dir, _ = finished_run
    shutil.copytree(model_dir / "checkpoints", tmp_path / "model" / "checkpoints")
    with pytest.raises(CheckpointMismatchError, match="ckpt-24 does not fit"):
        run(tmp_path / "model", train_steps=30, config="irevnet_small")


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    builder = fake_data.make_builder(INFO, nan_from_batch=9)
    with pytest.raises(NonFiniteLossError, match=r"steps 9-12.*ckpt-8"):
        run(tmp_path, builder=builder, train_steps=20, steps_per_loop=4, checkpoint_every=4,
            eval_every=0)
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-8")
    assert not os.path.exists(tmp_path / "model.keras")
    reader = tf.train.load_checkpoint(str(tmp_path / "checkpoints" / "ckpt-8"))
    for name in reader.get_variable_to_shape_map():
        value = reader.get_tensor(name)
        if np.issubdtype(np.asarray(value).dtype, np.floating):
            assert np.all(np.isfinite(value)), name


def test_long_evaluation_reports_progress(tmp_path, caplog):
    """An evaluation longer than one loop reports images, images/s and time left in
    between, like training, and its chunks add up to the same metrics as one call."""
    caplog.set_level("INFO", logger="absl")
    result = run(tmp_path / "model", train_steps=2, steps_per_loop=2, eval_steps=5,
                 eval_every=0, checkpoint_every=0, summary_images=0)
    lines = [record.getMessage() for record in caplog.records
             if record.getMessage().startswith("evaluation at step 2:")]
    progress = [line for line in lines if "images/s" in line]
    assert [line.split("  ")[0] for line in progress] == [
        "evaluation at step 2: 16/40 images (40.0%)", "evaluation at step 2: 32/40 images (80.0%)"]
    assert all(line.endswith(" left") for line in progress)
    assert result["eval_examples"] == 5 * 8
