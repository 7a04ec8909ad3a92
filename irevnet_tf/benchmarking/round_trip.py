"""Where the float32 round-trip error of decode(encode(x)) comes from (benchmarks/round_trip_error.py).

Each block inverts exactly in real arithmetic; in float32, `decode(encode(x))` misses x by
the rounding of both passes, amplified block after block by the bottlenecks' gain. This
module splits that error with a float64 copy of the same model (same weights and
statistics), whose arithmetic is exact at this scale:

- `encode32 -> decode32`: what users get.
- `encode32 -> decode64`: the float32 Phi decoded exactly: the encode's share.
- `encode64 -> float32 -> decode32`: an exact Phi, stored in float32, decoded in float32:
  the decode's share.
- `encode64 -> float32 -> decode64`: only the float32 storage of Phi: the floor that the
  representation itself sets.
- `encode64 -> decode64`: float64 throughout, Phi kept in float64: what a model whose
  float32 round trip is not enough can get from its float64 copy.

and measures two local figures:

- each block inverted in float32 from its exact float32 output (what the encode produced),
  in units of float32 rounding of the output (2^-24 max|output|): about 1 when the decode
  repeats the encode's arithmetic bit for bit, so a block's inverse loses nothing that the
  addition `y1 = F(x2) + psi(x1)` did not already round away;
- each block's F in float32 against float64 on the same input (relative rms and max): the
  rounding of the convolutions, which no longer cancels once the decode evaluates F on an
  input that differs from the encode's in the last bits.
"""

import numpy as np
import tensorflow as tf

from irevnet_tf.model import IRevNet

FLOAT32_UNIT = 2.0 ** -24  # Half the spacing of float32 numbers in [1, 2).


def float64_copy(model):
    """The same IRevNet (configuration, weights, batch-norm statistics) computing in float64."""
    config = dict(model.get_config(), dtype="float64")
    twin = IRevNet.from_config(config)
    twin.set_weights([w.astype(np.float64) if w.dtype == np.float32 else w
                      for w in model.get_weights()])
    return twin


def _relative_max_error(restored, images):
    restored, images = np.asarray(restored, np.float64), np.asarray(images, np.float64)
    return float(np.max(np.abs(restored - images)) / np.max(np.abs(images)))


def smallest_moving_variance(model):
    """The smallest moving variance of any batch norm in the model: how close one is to
    collapse, where its inference scale 1/sqrt(variance + epsilon) amplifies rounding most."""
    return min(float(np.min(variable.numpy())) for variable in model.variables
               if variable.path.endswith("moving_variance"))


def round_trip_budget(model, images, twin=None):
    """The five round trips of the module docstring, as max|restored - x| / max|x|."""
    twin = twin or float64_copy(model)
    images32 = tf.constant(images, tf.float32)
    phi32 = model.encode(images32)
    phi64 = twin.encode(tf.cast(images32, tf.float64))
    stored = tf.cast(tf.cast(phi64, tf.float32), tf.float64)
    return {
        "encode32_decode32": _relative_max_error(model.decode(phi32), images32),
        "encode32_decode64": _relative_max_error(twin.decode(tf.cast(phi32, tf.float64)),
                                                 images32),
        "encode64_decode32": _relative_max_error(model.decode(tf.cast(stored, tf.float32)),
                                                 images32),
        "encode64_decode64": _relative_max_error(twin.decode(stored), images32),
        "float64_throughout": _relative_max_error(twin.decode(phi64), images32),
        "phi32_relative_error": _relative_max_error(phi32, phi64),
    }


def block_figures(model, images, twin=None):
    """Per block: float32 inversion error from the exact output (in float32 units of the
    output's maximum) and F's float32 rounding against float64 (relative rms and max)."""
    twin = twin or float64_copy(model)
    pairs = [tf.constant(p) for p in model.intermediate_representations(
        tf.constant(images, tf.float32), level="block")]
    inverse = tf.function(lambda block, pair: block.inverse(pair, training=False))
    bottleneck = tf.function(lambda block, x: block.bottleneck(x, training=False))
    figures = []
    for block, twin_block, before, after in zip(model.stack, twin.stack, pairs[:-1], pairs[1:]):
        width = block.out_channels
        rebuilt = tf.concat(inverse(block, (after[..., :width], after[..., width:])), axis=-1)
        unit = FLOAT32_UNIT * float(tf.reduce_max(tf.abs(after)))
        # F's input, as the block's call forms it: x2 after the injective padding.
        x2 = before[..., block.input_halves[0]:]
        if block.pad:
            x2 = block.injective_pad(before)[..., block.out_channels:]
        f32 = bottleneck(block, x2).numpy().astype(np.float64)
        f64 = bottleneck(twin_block, tf.cast(x2, tf.float64)).numpy()
        difference = f32 - f64
        figures.append({
            "block": block.name,
            "inversion_error_units": float(np.max(np.abs(rebuilt - before))) / unit,
            "f_relative_rms_error": float(np.sqrt(np.mean(difference ** 2))
                                          / max(np.sqrt(np.mean(f64 ** 2)), 1e-300)),
            "f_relative_max_error": float(np.max(np.abs(difference))
                                          / max(np.max(np.abs(f64)), 1e-300)),
        })
    return figures
