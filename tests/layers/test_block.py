"""IRevBlock: forward against the numpy reference, exact inverses in float64, clear errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from irevnet_tf.layers import IRevBlock, StreamRangeError
from tests import helpers, reference

# (halves, out_channels, stride, first): injective first block with odd halves (a 3-channel
# image split 1 + 2), bijective stride 1, bijective stride 2, injective non-first block.
CASES = [((1, 2), 4, 1, True), ((4, 4), 4, 1, False), ((2, 2), 8, 2, False),
         ((3, 3), 5, 1, False)]


def _build(halves, out_channels, stride, first, dropout_rate=0.0):
    block = IRevBlock(out_channels, stride=stride, first=first, mult=2,
                      dropout_rate=dropout_rate, dtype="float64")
    block.build([(None, 8, 8, halves[0]), (None, 8, 8, halves[1])])
    helpers.randomize_batch_norms(block, seed=sum(halves) + out_channels)
    return block


def _pair(halves, seed=0, batch=3):
    rng = np.random.default_rng(seed)
    return tuple(tf.constant(rng.standard_normal((batch, 8, 8, c))) for c in halves)


@pytest.mark.parametrize("halves,out_channels,stride,first", CASES)
def test_forward_matches_numpy_reference(halves, out_channels, stride, first):
    block = _build(halves, out_channels, stride, first)
    x1, x2 = _pair(halves)
    y2, y1 = block((x1, x2), training=False)
    ref2, ref1 = reference.block_forward(
        x1.numpy(), x2.numpy(), helpers.bottleneck_weights(block.bottleneck), out_channels,
        stride, preactivation=not first, fraction_bits=block.grid.fraction_bits)
    np.testing.assert_allclose(y2.numpy(), ref2, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y1.numpy(), ref1, rtol=1e-10, atol=1e-10)
    assert block.is_injective == (stride == 1 and 2 * out_channels > sum(halves))


def _grid_pair(block, halves, seed, batch=3):
    """Integer grid points of a random pair (the exact stream's representation)."""
    return tuple(block.grid.quantize(t) for t in _pair(halves, seed, batch))


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16", "float64"])
@pytest.mark.parametrize("halves,out_channels,stride,first", CASES)
def test_integer_stream_is_the_rounded_reference_and_inverts_bit_for_bit(
        halves, out_channels, stride, first, policy):
    block = IRevBlock(out_channels, stride=stride, first=first, mult=2,
                      dtype="float64" if policy == "float64" else "float32",
                      bottleneck_dtype=policy)
    block.build([(None, 8, 8, halves[0]), (None, 8, 8, halves[1])])
    helpers.randomize_batch_norms(block, seed=3)
    x1, x2 = _grid_pair(block, halves, seed=4)
    y2, y1 = block((x1, x2), training=False)
    assert y1.dtype == y2.dtype == tf.int32
    # Against numpy: F in float64 on the same grid values, rounded onto the grid. F in
    # float32/bfloat16 is off float64 by its rounding, which moves few grid points by one.
    scale = block.grid.scale
    ref2, ref1 = reference.block_forward(
        x1.numpy() / scale, x2.numpy() / scale, helpers.bottleneck_weights(block.bottleneck),
        out_channels, stride, preactivation=not first, fraction_bits=block.grid.fraction_bits)
    np.testing.assert_array_equal(y2.numpy(), ref2 * scale)
    tolerance = {"float64": 0, "float32": 2, "mixed_bfloat16": 0.05 * scale}[policy]
    np.testing.assert_allclose(y1.numpy(), ref1 * scale, rtol=0, atol=tolerance)
    r1, r2 = block.inverse((y2, y1))
    np.testing.assert_array_equal(r1.numpy(), x1.numpy())
    np.testing.assert_array_equal(r2.numpy(), x2.numpy())


def test_range_errors_name_the_block():
    block = _build((2, 2), 8, 2, False)
    x1, x2 = _grid_pair(block, (2, 2), seed=5)
    huge = x1 + (2 ** 30 - 10)  # Inside int32, but the sum with F's output leaves the range.
    with pytest.raises((StreamRangeError, tf.errors.InvalidArgumentError),
                       match=f"{block.name}: .*exact stream's range .*fraction_bits"):
        block((huge, x2))
    block.bottleneck.conv3.kernel.assign(np.full(block.bottleneck.conv3.kernel.shape, np.nan))
    with pytest.raises((StreamRangeError, tf.errors.InvalidArgumentError),
                       match=f"{block.name}: F's output is not finite"):
        block((x1, x2))


@pytest.mark.parametrize("halves,out_channels,stride,first", CASES)
def test_inverse_is_exact_in_float64(halves, out_channels, stride, first):
    block = _build(halves, out_channels, stride, first)
    x1, x2 = _pair(halves, seed=1)
    r1, r2 = block.inverse(block((x1, x2), training=False))
    assert r1.shape == x1.shape and r2.shape == x2.shape
    np.testing.assert_allclose(r1.numpy(), x1.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(r2.numpy(), x2.numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("halves,out_channels,stride,first", CASES)
def test_training_mode_inverse_with_the_same_dropout_seed(halves, out_channels, stride, first):
    block = _build(halves, out_channels, stride, first, dropout_rate=0.3)
    if first:
        # The injective first block's x2 is all padding zeros, so its bottleneck sees only
        # bn1's betas: ReLU must pass one of them, or every mask gives the same output.
        beta = block.bottleneck.bn1.beta
        beta.assign(np.abs(beta.numpy()))
    x1, x2 = _pair(halves, seed=2)
    seed = tf.constant([7, 11])
    outputs = block((x1, x2), training=True, dropout_seed=seed)
    r1, r2 = block.inverse(outputs, training=True, dropout_seed=seed)
    np.testing.assert_allclose(r1.numpy(), x1.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(r2.numpy(), x2.numpy(), rtol=0, atol=1e-12)
    # Another mask is another function: the seed is what makes the inverse exact.
    other, _ = block.inverse(outputs, training=True, dropout_seed=tf.constant([1, 2]))
    assert np.max(np.abs(other.numpy() - x1.numpy())) > 1e-3


def test_inverse_never_updates_moving_statistics():
    block = _build((2, 2), 8, 2, False)
    outputs = block(_pair((2, 2)), training=False)
    before = [v.numpy().copy() for v in block.non_trainable_weights]
    block.inverse(outputs, training=True)
    for old, variable in zip(before, block.non_trainable_weights):
        np.testing.assert_array_equal(old, variable.numpy())


def test_channel_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"stride-2 block .*out_channels=12"):
        IRevBlock(12, stride=2).build([(None, 8, 8, 2), (None, 8, 8, 2)])
    with pytest.raises(ValueError, match="cannot drop channels"):
        IRevBlock(2, stride=1, mult=1).build([(None, 8, 8, 3), (None, 8, 8, 3)])
    with pytest.raises(ValueError, match="equal halves"):
        IRevBlock(3, stride=1, mult=1).build([(None, 8, 8, 2), (None, 8, 8, 4)])
    with pytest.raises(ValueError, match="out_channels"):
        IRevBlock(0)
    block = _build((2, 2), 8, 2, False)
    with pytest.raises(ValueError, match=r"outputs\[1\].*8 channels"):
        block.inverse((tf.zeros([1, 4, 4, 8], tf.float64), tf.zeros([1, 4, 4, 6], tf.float64)))
    with pytest.raises(ValueError, match="pair"):
        block(tf.zeros([1, 8, 8, 4], tf.float64))


def test_config_round_trip_and_registration():
    block = IRevBlock(8, stride=2, first=True, mult=2, dropout_rate=0.1, name="b")
    clone = IRevBlock.from_config(block.get_config())
    assert clone.get_config() == block.get_config()
    assert keras.saving.get_registered_object("irevnet_tf>IRevBlock") is IRevBlock


def test_stride_two_block_on_the_smallest_input():
    # A 2x2 input: the strided convolution only has an output because of its padding.
    block = IRevBlock(8, stride=2, mult=2, dtype="float64")
    block.build([(None, 2, 2, 2), (None, 2, 2, 2)])
    x1, x2 = (tf.constant(np.random.default_rng(9).standard_normal((1, 2, 2, 2)))
              for _ in range(2))
    outputs = block((x1, x2))
    assert outputs[0].shape == (1, 1, 1, 8)
    r1, _ = block.inverse(outputs)
    np.testing.assert_allclose(r1.numpy(), x1.numpy(), atol=1e-12)
