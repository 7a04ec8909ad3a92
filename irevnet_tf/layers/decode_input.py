"""Checks of what `decode` is given, by `IRevNet.decode` and every SavedModel signature that
decodes: the caller's mistake named in the caller's terms, before the model runs.

What a caller can get wrong, and what the message then says:
- the shape: the expected shape and the one given (`check_shape`);
- int32 grid points outside the exact stream's range: the largest |value| given and the
  accepted range, both in grid units, the units the caller gave (an int32 is never NaN, and
  such values were not made by this model's `encode`, so the model's `fraction_bits` is
  not the thing to change);
- float features: NaN or Inf, or a largest |value| outside the range, in real units.

A Phi that is in range but overflows inside the stack is the model's matter: `FixedPoint`
reports it, naming the block, with its own advice.

Eager calls (on every backend) raise `DecodeInputError` (a ValueError); inside a TensorFlow
graph (a tf.function, a SavedModel signature, TF Serving) the same text is an
InvalidArgumentError's message, one line after TensorFlow's "assertion failed:", which is
what a serving client receives. Inside a user's `jax.jit` nothing can raise, and the values
are not checked (`IRevNet.decode` checks them before its own compiled call).
"""

import numpy as np
from keras import ops

from irevnet_tf import backends
from irevnet_tf.layers.fixed_point import STREAM_LIMIT, is_integer


class DecodeInputError(ValueError):
    """The input of `decode` is not something `decode` can take (shape, range, NaN/Inf)."""


def _shape_text(dims):
    return "[" + ", ".join("N" if d is None else str(d) for d in dims) + "]"


def check_shape(features, expected, owner, argument, what):
    """`features` after checking that its shape is `[N, *expected]` (at run time too: TF
    Serving feeds any shape to a signature).

    Args:
        expected: `(height, width, channels)`.
        owner, argument: who checks and the input's name, e.g. "decode", "features".
        what: what the expected shape is, e.g. "Phi of 32x32 images".
    """
    expected = tuple(int(d) for d in expected)
    message = (f"{owner}: `{argument}` must have shape {_shape_text((None, *expected))} "
               f"({what}), got")
    static = features.shape
    rank = static.rank if hasattr(static, "rank") else len(static)
    if rank is not None and (rank != 4 or any(
            d is not None and d != e for d, e in zip(tuple(static)[1:], expected))):
        raise DecodeInputError(f"{message} {_shape_text(tuple(static))}.")
    if backends.ops().is_concrete(features) or not backends.ops().GRAPH_ASSERTIONS:
        return features
    import tensorflow as tf  # Graph assertions exist on TensorFlow only.
    shape = tf.shape(features, out_type=tf.int64)
    # Compared on a copy padded to rank 4, so that another rank fails the check rather
    # than the comparison.
    padded = tf.concat([shape, tf.zeros([4], tf.int64)], 0)[:4]
    ok = tf.logical_and(tf.equal(tf.size(shape), 4),
                        tf.reduce_all(tf.equal(padded[1:], tf.constant(expected, tf.int64))))
    text = tf.strings.format(message + " {}.", shape, summarize=-1)
    with tf.control_dependencies([tf.debugging.Assert(ok, [text], name="check_decode_shape")]):
        return tf.identity(features)


def _messages(owner, argument, fraction_bits, integer):
    """`(out-of-range prefix, accepted range text)` for grid points or float features."""
    limit = STREAM_LIMIT
    real_limit = limit / 2.0 ** fraction_bits
    if integer:
        return (f"{owner}: `{argument}` holds int32 grid points up to |n| = ",
                f"; the exact stream accepts |n| < {limit} (2**30 grid points, real values "
                f"below {real_limit:g} at fraction_bits={fraction_bits}). These are not grid "
                f"points this model's encode made.")
    return (f"{owner}: `{argument}` holds float values up to |x| = ",
            f"; the exact stream accepts |x| < {real_limit:g} (fraction_bits="
            f"{fraction_bits}).")


def check_values(features, fraction_bits, owner, argument):
    """`features` after checking their values: int grid points |n| < 2**30, floats finite
    and |x| < 2**(30 - fraction_bits). Eager: raises DecodeInputError; in a graph: an
    assertion with the same text."""
    integer = is_integer(features)
    prefix, accepted = _messages(owner, argument, fraction_bits, integer)
    nan_message = (f"{owner}: `{argument}` holds NaN or Inf; decode takes finite features "
                   "(int32 grid points from encode, or floats on its scale).")
    if backends.ops().is_concrete(features):
        values = np.asarray(ops.convert_to_numpy(features))
        if values.size == 0:
            return features
        if not integer and not np.all(np.isfinite(values)):
            raise DecodeInputError(nan_message)
        largest = np.max(np.abs(values.astype(np.float64 if not integer else np.int64)))
        bound = STREAM_LIMIT if integer else STREAM_LIMIT / 2.0 ** fraction_bits
        if largest >= bound:
            shown = int(largest) if integer else f"{float(largest):g}"
            raise DecodeInputError(f"{prefix}{shown}{accepted}")
        return features
    if not backends.ops().GRAPH_ASSERTIONS:
        return features
    import tensorflow as tf  # Graph assertions exist on TensorFlow only.
    if integer:
        # int64 first: |-2**31| does not fit an int32.
        wide = tf.cast(features, tf.int64)
        largest = tf.maximum(tf.reduce_max(wide), -tf.reduce_min(wide))
        in_range = largest < STREAM_LIMIT
        checks = [tf.debugging.Assert(
            tf.logical_or(tf.equal(tf.size(features), 0), in_range),
            [tf.strings.format(prefix + "{}" + accepted, largest)], name="check_decode_range")]
    else:
        wide = tf.cast(features, tf.float64)
        finite = tf.reduce_all(tf.math.is_finite(wide))
        largest = tf.reduce_max(tf.abs(tf.where(tf.math.is_finite(wide), wide,
                                                tf.zeros_like(wide))))
        in_range = largest < STREAM_LIMIT / 2.0 ** fraction_bits
        empty = tf.equal(tf.size(features), 0)
        checks = [tf.debugging.Assert(tf.logical_or(empty, finite), [nan_message],
                                      name="check_decode_finite")]
        with tf.control_dependencies(checks):
            checks.append(tf.debugging.Assert(
                tf.logical_or(empty, in_range),
                [tf.strings.format(prefix + "{}" + accepted, largest)],
                name="check_decode_range"))
    with tf.control_dependencies(checks):
        return tf.identity(features)
