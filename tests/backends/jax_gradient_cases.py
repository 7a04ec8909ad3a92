"""The networks, batches and gradient functions of the JAX memory-saving gradient's tests
(test_jax_gradient.py under jax.jit, test_jax_gradient_eager.py op by op): the same network
built reversible and plain with identical weights, differentiated the way Keras' JAX trainer
does it (`model.stateless_call` under `jax.value_and_grad`). Imported by those modules only,
which skip themselves unless the backend is JAX."""

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest
from keras import ops

from irevnet_tf.model import IRevNet
from tests.helpers import randomize_batch_norms

# After an initial psi: a stride-1 block, then a stride-2 block (16x16x3 -> 4x4x48).
BIJECTIVE = dict(blocks=(1, 1), strides=(1, 2), channels=(6, 24), init_ds=2,
                 input_shape=(16, 16, 3), num_classes=5)
# A stride-1 injective block (3 image channels split 1 + 2, padded to 8 + 8), a bijective
# stride-1 block, then a stride-2 block.
INJECTIVE = dict(blocks=(2, 1), strides=(1, 2), channels=(8, 32), init_ds=0,
                 input_shape=(8, 8, 3), num_classes=5)
CONFIGS = {"bijective": BIJECTIVE, "injective": INJECTIVE}
BATCH = 6
SEED = (11, 23)


@pytest.fixture
def float64():
    """JAX computes in float64 only with x64 enabled; restored afterwards."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


def build_pair(kind, dtype="float32", dropout_rate=0.2, **overrides):
    """The same network twice, reversible and plain, with identical weights (batch norms
    randomised, as in a trained model)."""
    kwargs = dict(CONFIGS[kind], dropout_rate=dropout_rate, seed=5, dtype=dtype, **overrides)
    reversible = IRevNet(reversible=True, **kwargs)
    randomize_batch_norms(reversible, seed=1, shift_std=0.5)
    plain = IRevNet(reversible=False, **kwargs)
    plain.set_weights(reversible.get_weights())
    return reversible, plain


def batch(kind, dtype="float32", size=BATCH, seed=0):
    rng = np.random.default_rng(seed)
    shape = CONFIGS[kind]["input_shape"]
    images = jnp.asarray(rng.standard_normal((size, *shape)).astype(dtype))
    labels = jnp.asarray(rng.integers(0, CONFIGS[kind]["num_classes"], size).astype("int32"))
    return images, labels


def loss_function(model, labels, dropout_seed=SEED):
    """loss(trainable values, non-trainable values, images) -> (loss, new non-trainable
    values), as Keras' JAX trainer computes it."""
    seed = None if dropout_seed is None else jnp.asarray(dropout_seed, jnp.uint32)

    def loss(trainable_values, non_trainable_values, images):
        logits, new_values = model.stateless_call(
            trainable_values, non_trainable_values, images, training=True, dropout_seed=seed)
        value = ops.mean(keras.losses.sparse_categorical_crossentropy(
            labels, logits, from_logits=True))
        return value, new_values

    return loss


def gradients(model, images, labels, jit=True, dropout_seed=SEED):
    """(loss, new non-trainable values, [d loss / d images] + weight gradients), under
    `jax.jit` (as in `model.fit`) or eagerly."""
    function = jax.value_and_grad(loss_function(model, labels, dropout_seed),
                                  argnums=(0, 2), has_aux=True)
    if jit:
        function = jax.jit(function)
    (loss, new_values), (weight_grads, image_grads) = function(
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables], images)
    return loss, new_values, [image_grads] + list(weight_grads)


def assert_gradients_close(model, actual, expected, tolerance, per_variable=False):
    """The largest difference of each gradient relative to the largest |gradient| of the
    model (images included), or, with `per_variable`, to that gradient's own largest
    magnitude (float64: even a one-element gradient that sums to nearly nothing agrees)."""
    names = ["images"] + [v.path for v in model.trainable_variables]
    assert len(actual) == len(expected) == len(names)
    actual = [np.asarray(a, np.float64) for a in actual]
    expected = [np.asarray(e, np.float64) for e in expected]
    largest = max(np.abs(e).max() for e in expected)
    errors = {}
    for name, a, e in zip(names, actual, expected):
        assert a.shape == e.shape, name
        assert np.all(np.isfinite(a)), name
        scale = np.abs(e).max() if per_variable else largest
        errors[name] = np.abs(a - e).max() / scale if scale else np.abs(a).max()
    worst = max(errors, key=errors.get)
    assert errors[worst] <= tolerance, f"worst relative error {errors[worst]:.3g} at {worst}"




def float64_gradients_against_plain(kind, jit):
    """The reversible and plain `kind` networks in float64, differentiated eagerly or under
    jax.jit: checks that the losses agree to 1e-12 and every gradient to 1e-10 of its own
    largest magnitude; returns (reversible model, its new moving statistics, plain's)."""
    reversible, plain = build_pair(kind, dtype="float64")
    images, labels = batch(kind, dtype="float64")
    loss_rev, stats_rev, grads_rev = gradients(reversible, images, labels, jit=jit)
    loss_plain, stats_plain, grads_plain = gradients(plain, images, labels, jit=jit)
    assert grads_rev[1].dtype == jnp.float64
    np.testing.assert_allclose(loss_rev, loss_plain, rtol=1e-12)
    assert_gradients_close(reversible, grads_rev, grads_plain, 1e-10, per_variable=True)
    return reversible, stats_rev, stats_plain
