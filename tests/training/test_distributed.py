"""Two replicas (MirroredStrategy over the two logical CPUs of tests/conftest.py) and one
device against an independent computation of the same training.

Why not compare two replicas with one device directly: batch norm normalises with the
statistics of each replica's own share of the batch (as the release's DataParallel does),
so two replicas of 4 images and one device of 8 compute different things. The reference
therefore does what two replicas must do, step by step, without tf.distribute and with
plain autodiff (not the reversible gradient): per replica share, a forward pass in
training mode and the gradient of its summed cross-entropy divided by the global batch;
the sum of the replicas' gradients plus the coupled weight decay `wd * w`; then
torch.optim.SGD's momentum rule in float64. Moving statistics: each replica's own copy,
averaged over the replicas (what the trainer synchronises to). The same reference with
one share must give the one-device run, so the two runs are tied to each other through
it.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from irevnet_tf import model_files as model_dir_lib
from irevnet_tf.training import trainer
from tests.training import fake_data

INFO = fake_data.FakeInfo()
GLOBAL_BATCH, STEPS, SEED = 8, 3, 11
LR, MOMENTUM, WD, SMOOTHING = 0.05, 0.9, 1e-3, 0.1


def run_trainer(model_dir, strategy):
    return trainer.train(
        model_dir=str(model_dir), strategy=strategy, config="irevnet_tiny", dataset="fake",
        batch_size=GLOBAL_BATCH, train_steps=STEPS, steps_per_loop=STEPS,
        base_learning_rate=LR * 256 / GLOBAL_BATCH, lr_decay_steps=(1000,),
        momentum=MOMENTUM, weight_decay=WD, label_smoothing=SMOOTHING, seed=SEED,
        eval_steps=1, eval_every=0, checkpoint_every=0, summary_images=0,
        dataset_builder=fake_data.make_builder(INFO), dataset_info=INFO)


def reference_training(run_config, replicas):
    """The weights after STEPS steps on `replicas` replicas, computed as the docstring says."""
    keras.utils.set_random_seed(SEED)   # The trainer seeds the same way before building.
    initial = run_config.build_model()
    models = [run_config.build_model(reversible=False) for _ in range(replicas)]
    for model in models:
        model.set_weights(initial.get_weights())
    weights = [v.numpy().astype(np.float64) for v in initial.trainable_variables]
    buffers = [np.zeros_like(w) for w in weights]
    share = GLOBAL_BATCH // replicas
    stream = fake_data.batches(INFO.train_split, INFO, 16, share)
    loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True,
                                                   label_smoothing=SMOOTHING, reduction="sum")
    for _ in range(STEPS):
        total = [np.zeros_like(w) for w in weights]
        for model in models:
            images, labels = next(stream)
            for variable, value in zip(model.trainable_variables, weights):
                variable.assign(value.astype(np.float32))
            with tf.GradientTape() as tape:
                logits = model(images, training=True)
                loss = loss_fn(tf.one_hot(labels, INFO.num_classes), logits) / GLOBAL_BATCH
            for index, grad in enumerate(tape.gradient(loss, model.trainable_variables)):
                total[index] += grad.numpy()
        for index in range(len(weights)):
            buffers[index] = MOMENTUM * buffers[index] + total[index] + WD * weights[index]
            weights[index] = weights[index] - LR * buffers[index]
    statistics = {}
    for model in models:
        for variable in model.non_trainable_variables:
            statistics.setdefault(variable.path, []).append(variable.numpy())
    return ({v.path: w for v, w in zip(initial.trainable_variables, weights)},
            {path: np.mean(values, axis=0) for path, values in statistics.items()})


@pytest.mark.parametrize("strategy, replicas", [("one_device", 1), ("mirrored", 2)])
def test_replicas_match_the_independent_computation(tmp_path, strategy, replicas):
    result = run_trainer(tmp_path, strategy)
    assert result["step"] == STEPS
    trained, run_config = model_dir_lib.restore_model(str(tmp_path))
    assert tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).num_replicas_in_sync == 2
    expected_weights, expected_statistics = reference_training(run_config, replicas)
    for variable in trained.trainable_variables:
        np.testing.assert_allclose(variable.numpy(), expected_weights[variable.path],
                                   rtol=1e-3, atol=2e-5, err_msg=variable.path)
    for variable in trained.non_trainable_variables:
        np.testing.assert_allclose(variable.numpy(), expected_statistics[variable.path],
                                   rtol=1e-3, atol=2e-5, err_msg=variable.path)


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_on_two_replicas(tmp_path, precision):
    result = trainer.train(
        model_dir=str(tmp_path), strategy="mirrored", precision=precision,
        config="irevnet_tiny", dataset="fake", batch_size=8, train_steps=12, steps_per_loop=6,
        base_learning_rate=3.2, eval_steps=2, eval_every=0, checkpoint_every=0, seed=2,
        dataset_builder=fake_data.make_builder(INFO), dataset_info=INFO)
    assert np.isfinite(result["train_loss"]) and result["eval_top1"] > 0.5
    # The stream stays float32: reconstruction is exact to float32 rounding.
    assert result["reconstruction_max_error_pixels"] < 0.01
    model, _ = model_dir_lib.restore_model(str(tmp_path / "model.keras"))
    assert model.dtype_policy.name == "float32"
    restored, _ = model_dir_lib.restore_model(str(tmp_path))
    images, _ = next(fake_data.batches(INFO.eval_split, INFO, 16, 4))
    np.testing.assert_allclose(model(images), restored(images), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_xla_steps_on_two_replicas(tmp_path):
    """--jit_compile on a mirrored strategy: the compiled replica steps give the same
    weights as the uncompiled ones."""
    results = {}
    for jit in (False, True):
        trainer.train(
            model_dir=str(tmp_path / str(jit)), strategy="mirrored", jit_compile=jit,
            config="irevnet_tiny", dataset="fake", batch_size=8, train_steps=4,
            steps_per_loop=4, base_learning_rate=1.6, eval_steps=1, eval_every=0,
            checkpoint_every=0, summary_images=0, seed=4,
            dataset_builder=fake_data.make_builder(INFO), dataset_info=INFO)
        results[jit], _ = model_dir_lib.restore_model(str(tmp_path / str(jit)))
    for compiled, plain in zip(results[True].variables, results[False].variables):
        np.testing.assert_allclose(compiled.numpy(), plain.numpy(), rtol=1e-3, atol=1e-5,
                                   err_msg=compiled.path)
