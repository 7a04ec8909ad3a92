"""The replica step: loss, coupled weight decay and momentum against an independent computation,
and compilation with XLA (`jit_compile=True`), as TPUs need."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from irevnet_tf import build_irevnet
from irevnet_tf.training import MomentumSGD, task as task_lib


def tiny_model(reversible=True):
    keras.utils.set_random_seed(3)
    return build_irevnet("irevnet_tiny", num_classes=4, input_shape=(16, 16, 3),
                         reversible=reversible)


def batch(seed, size=8):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(size, 16, 16, 3)).astype(np.float32),
            rng.integers(0, 4, size=size).astype(np.int32))


def test_cross_entropy_with_label_smoothing_matches_numpy():
    task = task_lib.ClassificationTask(None, None, global_batch_size=3, num_classes=4,
                                       label_smoothing=0.2)
    logits = np.array([[1.0, 2.0, 0.5, -1.0], [0.0, 0.0, 0.0, 0.0], [3.0, -2.0, 1.0, 0.0]])
    labels = np.array([1, 3, 0])
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    targets = np.full((3, 4), 0.2 / 4) + 0.8 * np.eye(4)[labels]
    expected = -(targets * log_p).sum(-1)
    np.testing.assert_allclose(task.cross_entropy(labels, logits.astype(np.float32)),
                               expected, rtol=1e-6)


def test_two_steps_are_sgd_with_momentum_and_coupled_weight_decay():
    """Two steps of the task against torch.optim.SGD's rule in float64:
    `g = dL/dw + wd * w;  b = m * b + g;  w -= lr * b`, with dL/dw from plain autodiff
    of a Keras cross-entropy on a non-reversible copy of the model."""
    lr, momentum, wd = 0.05, 0.9, 0.01
    model = tiny_model()
    reference = tiny_model(reversible=False)
    reference.set_weights(model.get_weights())
    optimizer = MomentumSGD(lr, momentum=momentum, l2_decay=wd)
    task = task_lib.ClassificationTask(model, optimizer, global_batch_size=8, num_classes=4)
    weights = [v.numpy().astype(np.float64) for v in reference.trainable_variables]
    buffers = [np.zeros_like(w) for w in weights]
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    for step in range(2):
        images, labels = batch(step)
        task.train_step(images, labels, step)
        for variable, value in zip(reference.trainable_variables, weights):
            variable.assign(value.astype(np.float32))
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, reference(images, training=True))
        grads = tape.gradient(loss, reference.trainable_variables)
        for i, grad in enumerate(grads):
            buffers[i] = momentum * buffers[i] + grad.numpy() + wd * weights[i]
            weights[i] = weights[i] - lr * buffers[i]
    for variable, expected in zip(model.trainable_variables, weights):
        np.testing.assert_allclose(variable.numpy(), expected, rtol=2e-4, atol=2e-5,
                                   err_msg=variable.path)


def test_replica_step_compiles_with_xla():
    """The forward/backward pass (reversible custom gradient included) and the evaluation
    step compile with jit_compile=True and agree with the uncompiled versions."""
    model = tiny_model()
    task = task_lib.ClassificationTask(model, MomentumSGD(0.1, l2_decay=1e-4),
                                       global_batch_size=8, num_classes=4)
    images, labels = batch(0)
    statistics = [v.numpy() for v in model.non_trainable_variables]
    compiled = tf.function(task.compute_gradients, jit_compile=True)
    grads_xla, sums_xla = compiled(images, labels, tf.constant(0, tf.int64))
    for variable, value in zip(model.non_trainable_variables, statistics):
        variable.assign(value)
    grads, sums = task.compute_gradients(images, labels, 0)
    np.testing.assert_allclose(sums_xla, sums, rtol=1e-5)
    for g_xla, g in zip(grads_xla, grads):
        np.testing.assert_allclose(g_xla, g, rtol=1e-3, atol=1e-5)


@pytest.mark.slow
def test_whole_train_and_eval_steps_compile_with_xla():
    """The update included, as a TPU compiles it: one XLA step equals one plain step."""
    model = tiny_model()
    plain = tiny_model()
    plain.set_weights(model.get_weights())
    # MomentumSGD's fused in-place update compiles too.
    tasks = [task_lib.ClassificationTask(m, MomentumSGD(0.1, momentum=0.9, l2_decay=1e-4),
                                         global_batch_size=8, num_classes=4)
             for m in (model, plain)]
    images, labels = batch(0)
    tf.function(tasks[0].train_step, jit_compile=True)(images, labels, tf.constant(0, tf.int64))
    tasks[1].train_step(images, labels, 0)
    for compiled, expected in zip(model.variables, plain.variables):
        np.testing.assert_allclose(compiled.numpy(), expected.numpy(), rtol=1e-3, atol=1e-5)
    eval_xla = tf.function(tasks[0].eval_step, jit_compile=True)(images, labels)
    np.testing.assert_allclose(eval_xla, tasks[0].eval_step(images, labels), rtol=1e-5)


@pytest.mark.parametrize("dropout_rate", [0.0, 0.3])
def test_dropout_seed_depends_on_step_only(dropout_rate):
    model = build_irevnet("irevnet_tiny", num_classes=4, input_shape=(16, 16, 3),
                          dropout_rate=dropout_rate)
    task = task_lib.ClassificationTask(model, None, global_batch_size=8, num_classes=4,
                                       dropout_seed=7)
    seeds = [task._replica_dropout_seed(step) for step in (0, 0, 1)]
    if not dropout_rate:
        assert seeds == [None, None, None]
        return
    assert np.array_equal(seeds[0], seeds[1]) and not np.array_equal(seeds[0], seeds[2])
