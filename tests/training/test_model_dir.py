"""The model directory: run configs, and restoring a training checkpoint into a fresh model."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from irevnet_tf import build_irevnet
from irevnet_tf import model_files as model_dir
from tests import helpers


def _train_one_step(model):
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(tf.random.normal([4, 32, 32, 3]), training=True)))
    optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
    return optimizer


def _write_run(directory, model, optimizer, config_name="irevnet_tiny"):
    model_dir.RunConfig(config_name=config_name, image_size=32, num_classes=10, mean=(0.0,),
                        std=(1.0,)).save(model_dir.run_config_path(directory))
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer,
                                     step=tf.Variable(1, dtype=tf.int64))
    tf.train.CheckpointManager(checkpoint, model_dir.checkpoint_dir(directory), 3).save()


def test_training_checkpoint_restores_every_weight(tmp_path):
    model = build_irevnet("irevnet_tiny")
    helpers.randomize_batch_norms(model)
    optimizer = _train_one_step(model)
    _write_run(str(tmp_path), model, optimizer)
    restored, run_config = model_dir.restore_model(str(tmp_path))
    assert run_config.config_name == "irevnet_tiny"
    for original, copy in zip(model.weights, restored.weights):
        np.testing.assert_array_equal(original.numpy(), copy.numpy(), err_msg=original.path)


def test_checkpoint_of_a_deeper_configuration_is_refused(tmp_path):
    deeper = build_irevnet("irevnet_tiny", blocks=(1, 2, 1))
    _write_run(str(tmp_path), deeper, _train_one_step(deeper))
    with pytest.raises(ValueError, match="stage2_block2"):
        model_dir.restore_model(str(tmp_path))


def test_checkpoint_of_a_shallower_configuration_is_refused(tmp_path):
    shallower = build_irevnet("irevnet_tiny", blocks=(1, 1, 1))
    _write_run(str(tmp_path), shallower, _train_one_step(shallower))
    path = model_dir.run_config_path(str(tmp_path))
    with open(path) as handle:
        recorded = json.load(handle)
    recorded["overrides"] = {"blocks": [2, 1, 1]}
    with open(path, "w") as handle:
        json.dump(recorded, handle)
    with pytest.raises(ValueError, match="does not fit the model configuration"):
        model_dir.restore_model(str(tmp_path))


def test_missing_pieces_are_named(tmp_path):
    with pytest.raises(ValueError, match="run_config.json"):
        model_dir.restore_model(str(tmp_path))
    path = model_dir.run_config_path(str(tmp_path))
    model_dir.RunConfig(config_name="irevnet_tiny").save(path)  # No mean/std recorded.
    with pytest.raises(ValueError, match=f"{path}: .*lacks the required field 'mean'"):
        model_dir.restore_model(str(tmp_path))
    model_dir.RunConfig(config_name="irevnet_tiny", mean=(128.0,), std=(64.0,)).save(path)
    with pytest.raises(ValueError, match="no checkpoint"):
        model_dir.restore_model(str(tmp_path))
    with pytest.raises(ValueError, match="config_name"):
        model_dir.RunConfig.from_json('{"dataset": "x"}')
    with pytest.raises(ValueError, match="x.json: .*'std'"):
        model_dir.RunConfig.from_json('{"config_name": "irevnet_tiny", "mean": [1.0]}',
                                      source="x.json")
    with pytest.raises(ValueError, match="x.json: field 'std'"):
        model_dir.RunConfig.from_json(
            '{"config_name": "irevnet_tiny", "mean": [1.0], "std": [0.0]}', source="x.json")


def test_run_config_builds_the_model_with_its_normalisation():
    run_config = model_dir.RunConfig(config_name="irevnet_tiny", mean=(120.0, 110.0, 100.0),
                                     std=(60.0, 50.0, 40.0))
    model = run_config.build_model()
    assert model.pixel_mean == (120.0, 110.0, 100.0) and model.pixel_std == (60.0, 50.0, 40.0)
    assert run_config.model_kwargs()["pixel_std"] == [60.0, 50.0, 40.0]
    with pytest.raises(ValueError, match="`mean`"):
        model_dir.RunConfig(config_name="irevnet_tiny").build_model()
