"""The JAX memory-saving gradient op by op (no `jax.jit`, as a user's eager JAX code runs it),
against plain autodiff and against the jitted gradient that `model.fit` takes (the
networks and gradient functions: jax_gradient_cases.py; the jitted checks:
test_jax_gradient.py). A file of its own so that test workers (pytest-xdist) run it beside
the jitted checks: eager JAX dispatches every op, 20 s a network here.
"""

import keras
import numpy as np
import pytest

if keras.backend.backend() != "jax":
    pytest.skip("the JAX memory-saving gradient needs KERAS_BACKEND=jax",
                allow_module_level=True)

import jax.numpy as jnp  # noqa: E402

from tests.backends.jax_gradient_cases import (  # noqa: E402
    assert_gradients_close, batch, build_pair, float64, gradients)


# Eagerly too, BatchNorm's element-wise path normalises float64 inputs in float64.
@pytest.mark.parametrize("kind", ["bijective", "injective"])
def test_float64_gradients_equal_plain_autodiff_eagerly(kind, float64):
    reversible, plain = build_pair(kind, dtype="float64")
    images, labels = batch(kind, dtype="float64")
    loss_rev, _, grads_rev = gradients(reversible, images, labels, jit=False)
    loss_plain, _, grads_plain = gradients(plain, images, labels, jit=False)
    assert grads_rev[1].dtype == jnp.float64
    np.testing.assert_allclose(loss_rev, loss_plain, rtol=1e-12)
    assert_gradients_close(reversible, grads_rev, grads_plain, 1e-10, per_variable=True)


def test_jit_gradients_equal_eager_gradients():
    reversible, plain = build_pair("bijective")
    images, labels = batch("bijective")
    _, stats_eager, grads_eager = gradients(reversible, images, labels, jit=False)
    _, stats_jit, grads_jit = gradients(reversible, images, labels)
    assert_gradients_close(reversible, grads_jit, grads_eager, 1e-6)
    for a, b in zip(stats_jit, stats_eager):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)
    _, _, grads_plain_jit = gradients(plain, images, labels)
    assert_gradients_close(reversible, grads_jit, grads_plain_jit, 1e-6)
