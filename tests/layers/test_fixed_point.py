"""FixedPoint (the exact stream's number format) against numpy: quantise, dequantise, the
coupling's rounding and sums, the range check and the saturating cast without checks.

FixedPoint is not a Keras layer, so it is tested here rather than by the layer test base.
The expected values are numpy's: round-half-to-even of x * 2**k in float64, and integer
arithmetic in int64 (which cannot wrap where int32 would).

Every backend; the straight-through gradient is checked with TensorFlow's GradientTape only.
"""

import keras
import numpy as np
import pytest
from keras import ops

from irevnet_tf.layers.fixed_point import (STREAM_LIMIT, FixedPoint, StreamRangeError,
                                           checks_disabled)
from irevnet_tf import backends
from tests.helpers import tensorflow_only, to_numpy
from tests.helpers.layer_test import float64_unavailable


# A failed check: StreamRangeError, or on TensorFlow a graph assertion's error.
RANGE_ERRORS = (StreamRangeError, *backends.ops().ASSERTION_ERRORS)


def _numpy_quantize(x, bits):
    return np.round(np.asarray(x, np.float64) * 2.0 ** bits).astype(np.int64)


def _values(seed, shape=(3, 5, 7), spread=100.0):
    return np.random.default_rng(seed).uniform(-spread, spread, shape)


@pytest.mark.parametrize("bits", [0, 10, 18, 24])
@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16", "float16"])
def test_quantize_is_numpys_rounding_of_the_same_values(bits, dtype):
    grid = FixedPoint(bits)
    spread = min(60.0, grid.max_value / 2)  # float16 tops out at 65504.
    x = ops.cast(ops.convert_to_tensor(_values(bits, spread=spread)), dtype)
    n = grid.quantize(x)
    assert keras.backend.standardize_dtype(n.dtype) == "int32"
    # numpy rounds the values the tensor holds (already rounded to `dtype`), in float64.
    np.testing.assert_array_equal(to_numpy(n), _numpy_quantize(to_numpy(x), bits))


def test_ties_round_to_even():
    grid = FixedPoint(1)  # Grid step 1/2: 0.25 and 0.75 are ties.
    n = grid.quantize(ops.convert_to_tensor([0.25, 0.75, -0.25, -0.75, 1.25], "float64"))
    np.testing.assert_array_equal(to_numpy(n), [0, 2, 0, -2, 2])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dequantize_is_exact_and_floats_pass_through(dtype):
    if dtype == "float64" and float64_unavailable():
        pytest.skip(float64_unavailable())
    grid = FixedPoint(18)
    n = np.random.default_rng(1).integers(-2 ** 23, 2 ** 23, (4, 6)).astype(np.int32)
    real = grid.dequantize(ops.convert_to_tensor(n), dtype)
    assert keras.backend.standardize_dtype(real.dtype) == dtype
    # |n| < 2**24: exact in float32, so equal to the float64 quotient.
    np.testing.assert_array_equal(to_numpy(real), n / 2.0 ** 18)
    floats = ops.convert_to_tensor([0.1, -2.5], "float64")
    np.testing.assert_array_equal(ops.convert_to_numpy(grid.dequantize(floats, dtype)),
                                  np.array([0.1, -2.5]).astype(dtype))
    np.testing.assert_array_equal(to_numpy(grid.quantize(real)), n)  # And back.


def test_coupling_sum_and_difference_are_integer_arithmetic():
    grid = FixedPoint(18)
    rng = np.random.default_rng(2)
    x = rng.integers(-2 ** 28, 2 ** 28, (5, 5)).astype(np.int32)
    f = rng.uniform(-500, 500, (5, 5))  # F's float output.
    q = grid.round_residual(ops.convert_to_tensor(f, "float32"), like=ops.convert_to_tensor(x))
    assert keras.backend.standardize_dtype(q.dtype) == "int32"
    expected_q = _numpy_quantize(np.float32(f), 18)
    np.testing.assert_array_equal(to_numpy(q), expected_q)
    y = grid.add(ops.convert_to_tensor(x), q)
    np.testing.assert_array_equal(to_numpy(y), x.astype(np.int64) + expected_q)
    np.testing.assert_array_equal(to_numpy(grid.subtract(y, q)), x)


@tensorflow_only
def test_float_stream_rounds_with_a_straight_through_gradient():
    import tensorflow as tf

    grid = FixedPoint(4)
    f = tf.constant([0.03, -1.49, 2.2], tf.float32)
    like = tf.zeros([3], tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(f)
        r = grid.round_residual(f, like=like)
    np.testing.assert_array_equal(r.numpy(), np.round(np.float64(f.numpy()) * 16) / 16)
    np.testing.assert_array_equal(tape.gradient(r, f).numpy(), [1.0, 1.0, 1.0])
    with tf.GradientTape() as tape:
        tape.watch(f)
        s = grid.quantize_straight_through(f)
    np.testing.assert_array_equal(s.numpy(), r.numpy())
    np.testing.assert_array_equal(tape.gradient(s, f).numpy(), [1.0, 1.0, 1.0])


@pytest.mark.parametrize("bad", [2.0 ** 12 + 1.0, -(2.0 ** 12) - 1.0, np.nan, np.inf])
def test_range_check_names_the_owner(bad):
    grid = FixedPoint(18)  # Range +-2**12.
    x = ops.convert_to_tensor([0.5, bad], "float32")
    with pytest.raises(RANGE_ERRORS,
                       match="my_layer: the input is not finite or leaves the exact stream"):
        grid.quantize(x, owner="my_layer")
    total = ops.convert_to_tensor([STREAM_LIMIT - 1], "int32")
    with pytest.raises(RANGE_ERRORS, match="coupling's sum"):
        grid.add(total, ops.convert_to_tensor([1], "int32"), owner="block")


def test_without_checks_the_cast_saturates_instead_of_wrapping():
    grid = FixedPoint(18)
    x = ops.convert_to_tensor([1e9, -1e9, np.nan, 3.0], "float64")
    with checks_disabled():
        n = grid.quantize(x)
    # Finite values saturate at the largest integer below 2**30 that the input's dtype holds
    # (2**30 - 1 in float64; float32, which JAX computes float64 in by default, rounds that
    # up to 2**30, outside the range).
    limit = int(np.nextafter(np.array(2.0 ** 30, ops.convert_to_numpy(x).dtype), 0))
    assert limit < STREAM_LIMIT
    # Finite values saturate. NaN takes the platform's one float -> int cast value (numpy's
    # C cast gives the same on TensorFlow and PyTorch: -2**31 on x86, 0 on ARM; XLA, which
    # runs JAX's, gives 0); the trainer catches it through the gradients, which the NaN
    # reaches through F's recomputation.
    if keras.backend.backend() == "jax":
        nan_as_int = 0
    else:
        with np.errstate(invalid="ignore"):
            nan_as_int = int(np.array([np.nan]).astype(np.int32)[0])
    np.testing.assert_array_equal(to_numpy(n), [limit, -limit, nan_as_int, 3 * 2 ** 18])


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float64"])
def test_without_checks_no_dtype_saturates_outside_the_range(dtype):
    """Scaled values far beyond the range, in each float dtype the stream rounds in (F's
    output reaches `round_residual` in bfloat16 under mixed precision), cast to integers
    inside +-(2**30 - 1): a sum of two of them cannot wrap int32."""
    grid = FixedPoint(18)
    f = ops.cast(ops.convert_to_tensor([3e9, -3e9, 2.0 ** 30, -(2.0 ** 30)]), dtype)
    with checks_disabled():
        n = to_numpy(grid.round_residual(f, like=ops.zeros([4], "int32"), grid_units=True))
    assert np.all(np.abs(n.astype(np.int64)) < STREAM_LIMIT), n
    assert np.all(np.abs(n.astype(np.int64)) > STREAM_LIMIT - 2 ** 23), n  # Saturated.


def test_fraction_bits_are_checked():
    for bad in (-1, 25, 2.0, True, None):
        with pytest.raises(ValueError, match=r"`fraction_bits` must be an int in \[0, 24\]"):
            FixedPoint(bad)
    assert FixedPoint(7).get_config() == {"fraction_bits": 7}
    assert FixedPoint(7).step == 2.0 ** -7 and FixedPoint(7).max_value == 2.0 ** 23
