"""The JAX memory-saving gradient op by op (no `jax.jit`, as a user's eager JAX code runs it),
against plain autodiff in float64 (the networks and gradient functions:
jax_gradient_cases.py; the jitted checks: test_jax_gradient.py). A file of its own so that
test workers (pytest-xdist) run it beside the jitted checks: eager JAX dispatches every op,
20 s a network here.
"""

import keras
import numpy as np
import pytest

if keras.backend.backend() != "jax":
    pytest.skip("the JAX memory-saving gradient needs KERAS_BACKEND=jax",
                allow_module_level=True)

from tests.backends.jax_gradient_cases import (  # noqa: E402
    float64, float64_gradients_against_plain)


# Eagerly too, BatchNorm's element-wise path normalises float64 inputs in float64. Both
# sides equal plain autodiff's to 1e-10 in float64 (test_jax_gradient.py checks the jitted
# ones the same way), so eager and jitted gradients agree through it; the moving statistics
# are one training forward pass's, as under jit.
@pytest.mark.parametrize("kind", ["bijective", "injective"])
def test_float64_gradients_equal_plain_autodiff_eagerly(kind, float64):
    reversible, stats_rev, stats_plain = float64_gradients_against_plain(kind, jit=False)
    moved = 0
    for variable, new, expected in zip(reversible.non_trainable_variables, stats_rev,
                                       stats_plain):
        np.testing.assert_allclose(np.asarray(new), np.asarray(expected), rtol=1e-12,
                                   atol=1e-14, err_msg=variable.path)
        moved += int(np.abs(np.asarray(new) - np.asarray(variable.value)).max() > 0)
    assert moved >= 2 * len(reversible.stack)
