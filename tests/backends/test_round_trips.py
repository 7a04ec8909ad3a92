"""Exact round trips of full models on the active Keras backend (tests/conftest.py): for
`irevnet_small` and `irevnet_cifar`, in float32 and mixed_bfloat16, `decode(encode(x))`
gives back the grid points of the normalised images bit for bit,

- through the model's own paths (`model.encode`/`decode`: `tf.function` on TensorFlow,
  `jax.jit` with checkify on JAX, eager without gradient recording on PyTorch), and
- under the backend's compiler applied by the user: `tf.function(model.encode)`,
  `jax.jit(lambda x: model.encode(x))` (there the model has no checks: its casts saturate),
  `torch.compile` (only with IREVNET_TEST_TORCH_COMPILE=1: minutes per model on a
  2-core CPU);

and the stream's errors reach the caller on each backend: `StreamRangeError` for images
beyond the stream's range and for a Phi whose values overflow inside the stack,
`DecodeInputError` for a Phi outside the range.

Expected values are numpy's: the normalisation `(pixels - mean) / std` in float32 (the
model's float dtype, the same IEEE operations), its grid points by `model.grid.quantize`;
XLA (JAX) computes the division as a multiplication by `1 / std`, which rounds differently
in about 1 % of the values (one grid step), so each grid point must be one of numpy's two
forms, and the model's stream start must be the decoded images' grid points bit for bit.
Decoded pixels map back to grid points through numpy's normalisation in float64 (float32
rounding of the pixels, at most 2**-16 of them, stays far below half a grid step there).
irevnet_cifar (54 blocks) runs at batch 2; its cases, a compile each, are slow, and they run
on JAX and PyTorch (on TensorFlow, tests/test_exactness_full_depth.py covers full depth).
"""

import functools
import os

import keras
import numpy as np
import pytest

from irevnet_tf import build_irevnet
from irevnet_tf.layers.decode_input import DecodeInputError
from irevnet_tf.layers.fixed_point import STREAM_LIMIT, StreamRangeError
from tests.helpers import BACKEND, randomize_batch_norms, to_numpy

# A CIFAR-like normalisation (per channel, not powers of two), so that the entrance and its
# inverse are part of every round trip.
PIXEL_MEAN = (125.3, 123.0, 113.9)
PIXEL_STD = (63.0, 62.1, 66.7)
BATCH = 2

CONFIGS = [
    pytest.param("irevnet_small", id="irevnet_small"),
    # On TensorFlow, full depth is tests/test_exactness_full_depth.py's: irevnet_cifar and
    # irevnet301 in both policies, through tf.function, eagerly and exported, after 0 to 60
    # calibration passes. The entrance with this non-power-of-two normalisation is the same
    # layer at any depth (irevnet_small here).
    pytest.param("irevnet_cifar", id="irevnet_cifar", marks=[
        pytest.mark.slow,
        pytest.mark.skipif(BACKEND == "tensorflow",
                           reason="full depth on TensorFlow: tests/test_exactness_full_depth.py")]),
]
POLICIES = ["float32", "mixed_bfloat16"]


@functools.lru_cache(maxsize=None)
def _model(name, policy):
    """`name` under dtype policy `policy`, with trained-like batch norms (cached: building
    irevnet_cifar and compiling its paths is the cost of these tests)."""
    keras.utils.set_random_seed(1)
    model = build_irevnet(name, dtype=policy, pixel_mean=PIXEL_MEAN, pixel_std=PIXEL_STD)
    randomize_batch_norms(model, seed=2)
    return model


def _pixels(model, seed=0):
    """Integer pixel values in [0, 255], as float32 images of the model's input shape."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (BATCH, *model.image_shape)).astype(np.float32)


def _numpy_grid_points(model, pixels):
    """The grid points the stream can start from, by numpy: the float32 normalisation
    `(pixels - mean) / std`, and the same with the division as a multiplication by
    `1 / std`, which XLA (JAX's jit) substitutes for a division by a constant; each rounded
    by the grid."""
    mean, std = np.float32(PIXEL_MEAN), np.float32(PIXEL_STD)
    centred = pixels.astype(np.float32) - mean
    return (to_numpy(model.grid.quantize(centred / std)),
            to_numpy(model.grid.quantize(centred * (np.float32(1.0) / std))))


def _decoded_grid_points(model, decoded):
    normalised = (to_numpy(decoded) - np.array(PIXEL_MEAN)) / np.array(PIXEL_STD)
    return to_numpy(model.grid.quantize(normalised.astype(np.float32)))


def _assert_round_trip(model, pixels, phi, decoded):
    """Phi's shape and dtype; the stream's first grid points (the stem's output, which for
    these configurations, without an initial psi, are the images' grid points) are numpy's
    (each one of numpy's two forms of the normalisation), and `decoded` maps back to exactly
    them."""
    assert tuple(phi.shape) == (BATCH, *model.phi_shape)
    assert keras.backend.standardize_dtype(phi.dtype) == "int32"
    assert model.init_ds == 0
    start = to_numpy(model.intermediate_representations(pixels)[0])
    divided, multiplied = _numpy_grid_points(model, pixels)
    assert np.all((start == divided) | (start == multiplied)), (
        f"{np.sum((start != divided) & (start != multiplied))} grid points are neither form "
        f"of numpy's normalisation")
    np.testing.assert_array_equal(_decoded_grid_points(model, decoded), start)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("name", CONFIGS)
def test_round_trip_is_exact_through_the_models_own_paths(name, policy):
    model = _model(name, policy)
    assert model.dtype_policy.name == policy
    pixels = _pixels(model)
    phi = model.encode(pixels)
    _assert_round_trip(model, pixels, phi, model.decode(phi))
    # Phi as numpy (what a caller stores) decodes the same.
    _assert_round_trip(model, pixels, phi, model.decode(to_numpy(phi)))


def _user_compiled(function):
    """`function` under the active backend's compiler, as a user would apply it."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(function)
    if BACKEND == "jax":
        import jax

        return jax.jit(function)
    return _torch_compiled(function)


def _torch_compiled(function):
    """`torch.compile(function)`, only where asked for (IREVNET_TEST_TORCH_COMPILE=1): on a
    2-core CPU it compiled irevnet_small's encode and decode in 456 s (float32; a graph break
    at every coupling's check), too long for CI. PyTorch's other path is eager execution,
    the model's own (test_round_trip_is_exact_through_the_models_own_paths)."""
    if os.environ.get("IREVNET_TEST_TORCH_COMPILE") != "1":
        pytest.skip("torch.compile of a full model takes minutes on a 2-core CPU (456 s for "
                    "irevnet_small); set IREVNET_TEST_TORCH_COMPILE=1 to run it")
    import torch

    return torch.compile(function, dynamic=False)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("name", CONFIGS)
def test_round_trip_is_exact_under_the_users_compiler(name, policy):
    model = _model(name, policy)
    pixels = _pixels(model, seed=1)
    encode = _user_compiled(lambda x: model.encode(x))
    decode = _user_compiled(lambda p: model.decode(p))
    inputs = keras.ops.convert_to_tensor(pixels)
    phi = encode(inputs)
    # Exact within the user's compilation; its Phi need not be the model's own path's bit for
    # bit (under jax.jit the weights are constants, which XLA folds into F's arithmetic).
    _assert_round_trip(model, pixels, phi, decode(phi))


def _stream_range_model():
    return _model("irevnet_small", "float32")


def test_images_beyond_the_streams_range_raise_stream_range_error():
    model = _stream_range_model()
    pixels = _pixels(model)
    # Normalised, 1e6 is about 1.6e4, beyond the range +-2**(30 - 18) = +-4096.
    pixels[0, 3, 4, 1] = 1e6
    with pytest.raises(StreamRangeError, match="images"):
        model.encode(pixels)


def test_phi_that_overflows_inside_the_stack_raises_stream_range_error():
    """A Phi inside the range (so a valid input of decode) whose first inverse coupling
    leaves it: every value is +-(2**30 - 1), so `y - F(x)` leaves +-2**30 wherever F is
    non-zero with the sign of y's opposite, which F of such large inputs is somewhere."""
    model = _stream_range_model()
    signs = np.random.default_rng(5).choice([-1, 1], (BATCH, *model.phi_shape))
    phi = (signs * (STREAM_LIMIT - 1)).astype(np.int32)
    with pytest.raises(StreamRangeError, match="exact stream"):
        model.decode(phi)


@pytest.mark.parametrize("value", [STREAM_LIMIT, -STREAM_LIMIT])
def test_phi_outside_the_range_raises_decode_input_error(value):
    model = _stream_range_model()
    phi = np.zeros((BATCH, *model.phi_shape), np.int32)
    phi[1, 0, 1, 2] = value
    with pytest.raises(DecodeInputError, match="phi"):
        model.decode(phi)

