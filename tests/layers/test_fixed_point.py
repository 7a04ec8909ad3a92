"""FixedPoint (the exact stream's number format) against numpy: quantise, dequantise, the
coupling's rounding and sums, the range check and the saturating cast without checks.

FixedPoint is not a Keras layer, so it is tested here rather than by the layer test base.
The expected values are numpy's: round-half-to-even of x * 2**k in float64, and integer
arithmetic in int64 (which cannot wrap where int32 would).
"""

import numpy as np
import pytest
import tensorflow as tf

from irevnet_tf.layers.fixed_point import (STREAM_LIMIT, FixedPoint, StreamRangeError,
                                           checks_disabled)


def _numpy_quantize(x, bits):
    return np.round(np.asarray(x, np.float64) * 2.0 ** bits).astype(np.int64)


def _values(seed, shape=(3, 5, 7), spread=100.0):
    return np.random.default_rng(seed).uniform(-spread, spread, shape)


@pytest.mark.parametrize("bits", [0, 10, 18, 24])
@pytest.mark.parametrize("dtype", [tf.float32, tf.float64, tf.bfloat16, tf.float16])
def test_quantize_is_numpys_rounding_of_the_same_values(bits, dtype):
    grid = FixedPoint(bits)
    spread = min(60.0, grid.max_value / 2)  # float16 tops out at 65504.
    x = tf.cast(tf.constant(_values(bits, spread=spread)), dtype)
    n = grid.quantize(x)
    assert n.dtype == tf.int32
    # numpy rounds the values the tensor holds (already rounded to `dtype`), in float64.
    np.testing.assert_array_equal(n.numpy(), _numpy_quantize(tf.cast(x, tf.float64), bits))


def test_ties_round_to_even():
    grid = FixedPoint(1)  # Grid step 1/2: 0.25 and 0.75 are ties.
    n = grid.quantize(tf.constant([0.25, 0.75, -0.25, -0.75, 1.25], tf.float64))
    np.testing.assert_array_equal(n.numpy(), [0, 2, 0, -2, 2])


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_dequantize_is_exact_and_floats_pass_through(dtype):
    grid = FixedPoint(18)
    n = np.random.default_rng(1).integers(-2 ** 23, 2 ** 23, (4, 6)).astype(np.int32)
    real = grid.dequantize(tf.constant(n), dtype)
    assert real.dtype == dtype
    # |n| < 2**24: exact in float32, so equal to the float64 quotient.
    np.testing.assert_array_equal(real.numpy().astype(np.float64), n / 2.0 ** 18)
    floats = tf.constant([0.1, -2.5], tf.float64)
    np.testing.assert_array_equal(grid.dequantize(floats, dtype).numpy(),
                                  np.array([0.1, -2.5]).astype(dtype.as_numpy_dtype))
    np.testing.assert_array_equal(grid.quantize(real).numpy(), n)  # And back.


def test_coupling_sum_and_difference_are_integer_arithmetic():
    grid = FixedPoint(18)
    rng = np.random.default_rng(2)
    x = rng.integers(-2 ** 28, 2 ** 28, (5, 5)).astype(np.int32)
    f = rng.uniform(-500, 500, (5, 5))  # F's float output.
    q = grid.round_residual(tf.constant(f, tf.float32), like=tf.constant(x))
    assert q.dtype == tf.int32
    expected_q = _numpy_quantize(np.float32(f), 18)
    np.testing.assert_array_equal(q.numpy(), expected_q)
    y = grid.add(tf.constant(x), q)
    np.testing.assert_array_equal(y.numpy(), x.astype(np.int64) + expected_q)
    np.testing.assert_array_equal(grid.subtract(y, q).numpy(), x)


def test_float_stream_rounds_with_a_straight_through_gradient():
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
    x = tf.constant([0.5, bad], tf.float32)
    with pytest.raises((StreamRangeError, tf.errors.InvalidArgumentError),
                       match="my_layer: the input is not finite or leaves the exact stream"):
        grid.quantize(x, owner="my_layer")
    total = tf.constant([STREAM_LIMIT - 1], tf.int32)
    with pytest.raises((StreamRangeError, tf.errors.InvalidArgumentError),
                       match="coupling's sum"):
        grid.add(total, tf.constant([1], tf.int32), owner="block")


def test_without_checks_the_cast_saturates_instead_of_wrapping():
    grid = FixedPoint(18)
    x = tf.constant([1e9, -1e9, np.nan, 3.0], tf.float64)
    with checks_disabled():
        n = grid.quantize(x)
    limit = STREAM_LIMIT - 1
    # Finite values saturate. NaN takes the platform's one float -> int cast value (numpy's
    # C cast gives the same: -2**31 on x86, 0 on ARM); the trainer catches it through the
    # gradients, which the NaN reaches through F's recomputation.
    with np.errstate(invalid="ignore"):
        nan_as_int = int(np.array([np.nan]).astype(np.int32)[0])
    np.testing.assert_array_equal(n.numpy(), [limit, -limit, nan_as_int, 3 * 2 ** 18])


def test_fraction_bits_are_checked():
    for bad in (-1, 25, 2.0, True, None):
        with pytest.raises(ValueError, match=r"`fraction_bits` must be an int in \[0, 24\]"):
            FixedPoint(bad)
    assert FixedPoint(7).get_config() == {"fraction_bits": 7}
    assert FixedPoint(7).step == 2.0 ** -7 and FixedPoint(7).max_value == 2.0 ** 23
