"""Measures what the exact stream promises: decode(encode(x)) against x, and the range it uses.

Used by benchmarks/round_trip_error.py and the full-depth exactness tests. For a model and a
batch of images (floats, in the model's input units):

- `bit_exact` / `differing_values`: `decode(encode(x))` against the grid points of x
  (`dequantize(quantize(x))`), compared bit for bit; the only rounding between an image and
  Phi is that quantisation.
- `input_relative_error`: `max|decode(encode(x)) - x| / max|x|` for x off the grid: the
  quantisation alone (at most 2**-(k+1) / max|x|).
- `batch_independent`: each image decoded alone equals its row of the batch's decode (and its
  Phi encoded alone equals its row of the batch's Phi): whether the kernels give the same
  bits at another batch size.
- `largest_stream_value` / `range_headroom`: the largest |value| anywhere in the stream
  (every block's output pair) against the format's range +-2**(30-k).
"""

import numpy as np
import tensorflow as tf

from irevnet_tf.model import IRevNet


def float64_copy(model):
    """The same IRevNet (configuration, weights, batch-norm statistics) computing in float64."""
    return model.with_dtype_policy("float64")


def _relative_max_error(restored, images):
    restored, images = np.asarray(restored, np.float64), np.asarray(images, np.float64)
    return float(np.max(np.abs(restored - images)) / np.max(np.abs(images)))


def smallest_moving_variance(model):
    """The smallest moving variance of any batch norm in the model: how close one is to
    collapse, where its inference scale 1/sqrt(variance + epsilon) is largest."""
    return min(float(np.min(variable.numpy())) for variable in model.variables
               if variable.path.endswith("moving_variance"))


def largest_stream_value(model, images):
    """The largest |value| (real units) of the stem's pair and of every block's output."""
    grid = model.grid
    representations = model.intermediate_representations(tf.constant(images), level="block")
    largest = max(int(tf.reduce_max(tf.abs(r))) for r in representations)
    return largest / grid.scale


def exactness_report(model, images, check_batch_independence=True):
    """The figures of the module docstring for `model` on `images` (numpy, NHWC)."""
    if not isinstance(model, IRevNet):
        raise TypeError(f"exactness_report: `model` must be an IRevNet, got "
                        f"{type(model).__name__}.")
    images = tf.constant(images, model.float_dtype)
    on_grid = model.dequantize(model.grid.quantize(images)).numpy()
    phi = model.encode(images)
    restored = model.decode(phi).numpy()
    differing = int(np.sum(restored != on_grid))
    largest = largest_stream_value(model, images)
    report = {
        "bit_exact": differing == 0,
        "differing_values": differing,
        "input_relative_error": _relative_max_error(restored, images),
        "fraction_bits": model.grid.fraction_bits,
        "largest_phi_value": float(np.max(np.abs(model.dequantize(phi).numpy()))),
        "largest_stream_value": largest,
        "range": model.grid.max_value,
        "range_headroom": model.grid.max_value / largest if largest else float("inf"),
        "smallest_moving_variance": smallest_moving_variance(model),
        "compute_dtype": model.dtype_policy.compute_dtype,
    }
    if check_batch_independence:
        phi_alone = [model.encode(images[i:i + 1]) for i in range(int(images.shape[0]))]
        decoded_alone = [model.decode(phi[i:i + 1]).numpy() for i in range(int(phi.shape[0]))]
        report["batch_independent"] = bool(
            all(np.array_equal(a.numpy(), b) for a, b in zip(phi_alone, phi.numpy()[:, None]))
            and all(np.array_equal(a, b) for a, b in zip(decoded_alone, restored[:, None])))
    return report
