"""MomentumSGD: the fused in-place update against the update rule written out in numpy float64."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from irevnet_tf.training import MomentumSGD


def numpy_steps(weights, gradients_per_step, lr, momentum, l2_decay, nesterov):
    """Keras' velocity convention with coupled decay, in float64."""
    weights = [w.astype(np.float64) for w in weights]
    velocities = [np.zeros_like(w) for w in weights]
    for gradients in gradients_per_step:
        for i, gradient in enumerate(gradients):
            g = gradient + l2_decay * weights[i]
            velocities[i] = momentum * velocities[i] - lr * g
            if nesterov:
                weights[i] = weights[i] + momentum * velocities[i] - lr * g
            else:
                weights[i] = weights[i] + velocities[i]
    return weights


@pytest.mark.parametrize("momentum,l2_decay,nesterov",
                         [(0.9, 0.0, False), (0.9, 0.01, False), (0.8, 0.05, True),
                          (0.0, 0.02, False)])
@pytest.mark.parametrize("compiled", [False, True])
def test_three_steps_match_numpy(momentum, l2_decay, nesterov, compiled):
    rng = np.random.default_rng(0)
    initial = [rng.standard_normal((3, 3, 4, 5)), rng.standard_normal(7)]
    variables = [keras.Variable(w.astype(np.float32)) for w in initial]
    steps = [[rng.standard_normal(w.shape) for w in initial] for _ in range(3)]
    optimizer = MomentumSGD(0.1, momentum=momentum, l2_decay=l2_decay, nesterov=nesterov)
    optimizer.build(variables)

    def apply(gradients):
        optimizer.apply(gradients, variables)

    if compiled:
        apply = tf.function(apply)
    for gradients in steps:
        apply([tf.constant(g, tf.float32) for g in gradients])
    expected = numpy_steps(initial, steps, 0.1, momentum, l2_decay, nesterov)
    for variable, want in zip(variables, expected):
        np.testing.assert_allclose(variable.numpy(), want, rtol=1e-5, atol=1e-6)


def test_equals_keras_sgd_without_decay():
    rng = np.random.default_rng(1)
    initial = rng.standard_normal((4, 6)).astype(np.float32)
    ours, theirs = keras.Variable(initial), keras.Variable(initial)
    fused, reference = MomentumSGD(0.05, momentum=0.9), keras.optimizers.SGD(0.05, momentum=0.9)
    for _ in range(3):
        gradient = tf.constant(rng.standard_normal((4, 6)), tf.float32)
        fused.apply([gradient], [ours])
        reference.apply([gradient], [theirs])
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6, atol=1e-7)


def test_update_compiles_with_xla():
    variable = keras.Variable(np.ones((2, 3), np.float32))
    optimizer = MomentumSGD(0.5, momentum=0.9, l2_decay=0.1)
    optimizer.build([variable])
    tf.function(lambda g: optimizer.apply([g], [variable]), jit_compile=True)(
        tf.ones((2, 3)))
    # g' = 1 + 0.1 * 1; v = -0.5 * 1.1; w = 1 - 0.55.
    np.testing.assert_allclose(variable.numpy(), np.full((2, 3), 0.45), rtol=1e-6)


def test_config_round_trip_and_bad_arguments():
    optimizer = MomentumSGD(0.3, momentum=0.7, l2_decay=5e-4, nesterov=True)
    restored = MomentumSGD.from_config(optimizer.get_config())
    assert (restored.l2_decay, restored.momentum, restored.nesterov) == (5e-4, 0.7, True)
    with pytest.raises(ValueError, match="l2_decay"):
        MomentumSGD(0.1, l2_decay=-1.0)
    with pytest.raises(ValueError, match="weight_decay.*l2_decay"):
        MomentumSGD(0.1, weight_decay=1e-4)


def _ancestors(op):
    """Every op `op` waits for, through data and control inputs."""
    seen, stack = set(), [op]
    while stack:
        current = stack.pop()
        for parent in [t.op for t in current.inputs] + list(current.control_inputs):
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


def test_an_update_does_not_wait_for_earlier_layers_gradients():
    # With one replica, the last layer's update must depend only on its own gradient,
    # not on the first layer's, which the backward pass computes last; otherwise every
    # gradient is alive at once before any update runs (the memory of a whole gradient
    # copy, which the reversible gradient is meant to avoid).
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4), keras.layers.Dense(3),
                              keras.layers.Dense(2)])
    model(tf.zeros((2, 5)))
    optimizer = MomentumSGD(0.1, momentum=0.9, l2_decay=0.01)
    optimizer.build(model.trainable_variables)

    @tf.function
    def step(images):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(images) ** 2)
        optimizer.apply(tape.gradient(loss, model.trainable_variables),
                        model.trainable_variables)

    graph = step.get_concrete_function(tf.TensorSpec((2, 5), tf.float32)).graph
    updates = [op for op in graph.get_operations() if op.type == "ResourceApplyKerasMomentum"]
    assert len(updates) == len(model.trainable_variables)  # In the variables' order.
    images = graph.inputs[0]
    # The first kernel's gradient: images^T @ dL/dy1.
    first_kernel_gradient = [
        op for op in graph.get_operations()
        if op.type == "MatMul" and op.get_attr("transpose_a")
        and any(tensor is images for tensor in op.inputs)]
    assert len(first_kernel_gradient) == 1
    last_kernel_update = updates[-2]
    assert first_kernel_gradient[0] not in _ancestors(last_kernel_update)
    assert first_kernel_gradient[0] in _ancestors(updates[0])


def test_one_replica_strategy_update_matches_numpy():
    # With one replica the cross-replica sum is skipped; the update must still go through
    # the strategy's variable update (a MirroredVariable here).
    strategy = tf.distribute.MirroredStrategy(["CPU:0"])
    initial = np.array([1.0, -2.0, 0.5])
    gradient = np.array([1.0, 2.0, 3.0])
    with strategy.scope():
        variable = keras.Variable(initial.astype(np.float32))
        optimizer = MomentumSGD(0.1, momentum=0.9, l2_decay=0.5)
        optimizer.build([variable])

    @tf.function
    def step():
        strategy.run(lambda: optimizer.apply([tf.constant(gradient, tf.float32)], [variable]))

    for _ in range(2):
        step()
    expected = numpy_steps([initial], [[gradient]] * 2, 0.1, 0.9, 0.5, nesterov=False)[0]
    np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-6)
