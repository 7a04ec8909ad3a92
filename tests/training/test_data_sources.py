"""The trainer on the real input pipelines (irevnet_tf.data), offline: tensorflow-datasets'
mock ImageNet, TFRecord shards written here, and the embedded digits."""

import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from irevnet_tf.data import InputDataError
from irevnet_tf import model_files as model_dir_lib
from irevnet_tf.training import trainer
from tests.data.conftest import write_imagenet_shards
from tests.helpers.events import read_events

SMALL = dict(config="irevnet_tiny", image_size=16, batch_size=8, train_steps=4,
             steps_per_loop=2, eval_steps=1, eval_every=0, checkpoint_every=0,
             summary_images=2, seed=1)


def check_finished(model_dir, result, num_classes):
    assert result["step"] == 4 and result["eval_examples"] == 8
    assert np.isfinite(result["train_loss"]) and 0 <= result["eval_top1"] <= 1
    run_config = model_dir_lib.RunConfig.load(os.path.join(model_dir, "run_config.json"))
    assert run_config.num_classes == num_classes and run_config.image_size == 16
    assert os.path.exists(os.path.join(model_dir, "model.keras"))


def test_imagenet2012_from_tensorflow_datasets(tmp_path):
    with tfds.testing.mock_data(num_examples=16):
        result = trainer.train(model_dir=str(tmp_path), dataset="imagenet2012",
                               data_dir="/nonexistent/tensorflow_datasets", **SMALL)
    check_finished(str(tmp_path), result, 1000)
    run_config = model_dir_lib.RunConfig.load(str(tmp_path / "run_config.json"))
    assert run_config.overrides == {"num_classes": 1000, "input_shape": [16, 16, 3]}
    assert run_config.mean == (123.675, 116.28, 103.53)


@pytest.fixture
def shards(tmp_path):
    return write_imagenet_shards(tmp_path / "shards")


def test_imagenet_tfrecord_shards(tmp_path, shards):
    result = trainer.train(model_dir=str(tmp_path / "model"), dataset="imagenet_tfrecord",
                           data_dir=shards, **SMALL)
    check_finished(str(tmp_path / "model"), result, 1000)


def test_corrupt_shard_is_named(tmp_path, shards):
    path = os.path.join(shards, "train-00001-of-00004")
    with open(path, "rb") as handle:
        content = handle.read()
    with open(path, "wb") as handle:
        handle.write(content[: len(content) // 2])
    with pytest.raises(InputDataError, match="train-00001-of-00004"):
        trainer.train(model_dir=str(tmp_path / "model"), dataset="imagenet_tfrecord",
                      data_dir=shards, deterministic=True, **{**SMALL, "train_steps": 8})


def test_loss_goes_down_on_digits(tmp_path):
    result = trainer.train(model_dir=str(tmp_path), dataset="digits", config="irevnet_tiny",
                           image_size=16, batch_size=32, train_steps=60, steps_per_loop=15,
                           base_learning_rate=0.8, lr_schedule="cosine", eval_every=0,
                           checkpoint_every=0, summary_images=0, seed=0)
    losses = [float(v) for _, v, _ in read_events(tmp_path / "train")["loss"]]
    assert losses[-1] < 0.6 * losses[0], losses
    assert result["eval_top1"] > 0.5   # chance: 0.1
    run_config = model_dir_lib.RunConfig.load(str(tmp_path / "run_config.json"))
    assert run_config.overrides == {"input_shape": [16, 16, 1]}


@pytest.mark.parametrize("dataset", ["imagenet2012", "imagenet_tfrecord"])
def test_imagenet_needs_data_dir(tmp_path, dataset):
    from irevnet_tf.training.errors import FlagError

    with pytest.raises(FlagError, match=f"^--data_dir is required for --dataset={dataset}"):
        trainer.train(model_dir=str(tmp_path), dataset=dataset)
    assert not os.listdir(tmp_path)
