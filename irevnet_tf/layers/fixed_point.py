"""FixedPoint: the number format of i-RevNet's exact stream, integers n that stand for n * 2**-k.

Why integers: a coupling `y1 = x1 + F(x2)` is undone by `x1 = y1 - F(x2)`, which in floating
point is exact only up to the rounding of the sum, and depth and batch norms amplify that
rounding (float32 round trips of 1e-6 to 5e-4 on irevnet301, 1e-2 in bfloat16). On a fixed
grid the sum is an integer sum, exact by construction, whatever precision F computes in, as
long as F gives the same bits when it is recomputed (same inputs, same kernels).

Three operations make the stream, and every part of the package uses this one object for them:
    quantize(x)          floats -> int32 grid points (round to nearest, ties to even)
    dequantize(n)        grid points -> floats (exact while |n| < 2**24 in float32)
    round_residual(f, like)
                         F's float output -> the grid: int32 for an integer stream, or,
                         for the float training path, floats on the grid with a
                         straight-through gradient (d round(f) / df = 1)

Range: every stream integer stays below 2**30 in magnitude (`max_value` = 2**(30 - k) in real
units), so the sum or difference of two of them never wraps around int32. A value that leaves
the range, or a NaN/Inf from F, is an error that names the layer (`StreamRangeError` in eager
code, an InvalidArgumentError with the same text from a compiled graph). XLA drops such
checks (TPUs cannot raise from inside a step); the casts are saturating there, so nothing
wraps, and the trainer's non-finite-loss check stops a diverged run. Training traces the stream
without checks (`checks_disabled`) for the same reason: a diverging step must show as a
non-finite loss, not as an error.
"""

import contextlib
import functools
import threading

import keras
from keras import ops

from irevnet_tf import backends
from irevnet_tf import validation as argument_validation

# Every stream integer satisfies |n| < 2**30, so a sum of two never leaves int32.
STREAM_LIMIT = 2 ** 30
DEFAULT_FRACTION_BITS = 18
# The marker that `StreamRangeError.reraise_from` looks for in a compiled graph's error.
_MARKER = "exact stream"


_STATE = threading.local()


@contextlib.contextmanager
def checks_disabled():
    """Traces the stream without range checks (training): there a NaN or overflow must reach
    the loss as a non-finite value, which the trainer and loss-scale optimizers handle,
    instead of stopping the step with an error. Out-of-range values still saturate."""
    previous = getattr(_STATE, "disabled", False)
    _STATE.disabled = True
    try:
        yield
    finally:
        _STATE.disabled = previous


class StreamRangeError(ValueError):
    """A value left the exact stream's range, or F produced NaN/Inf."""

    @classmethod
    def reraise_from(cls, error):
        """Re-raises a graph's assertion error from a range check as this error."""
        message = getattr(error, "message", str(error))
        if _MARKER not in message:
            raise error
        # The graph error repeats the node's traceback; keep our message (its first line),
        # without TensorFlow's function name and brackets, as the other backends give it.
        lines = [line for line in message.splitlines() if _MARKER in line]
        text = lines[0].strip() if lines else message
        if "assertion failed: [" in text:
            text = text.split("assertion failed: [", 1)[1].replace("] [", " ").rstrip("]")
        raise cls(text.replace("\\'", "'")) from None


def is_integer(tensor):
    """Whether `tensor` holds integers (the stream's grid points), on any backend."""
    return "int" in keras.backend.standardize_dtype(tensor.dtype)


# The name scope of every op the stream's arithmetic adds to a graph, so that a profile can
# tell them from F's (irevnet_tf.benchmarking.op_profile). Names cost nothing at run time.
STREAM_SCOPE = "stream"


def _stream_op(method):
    @functools.wraps(method)
    def scoped(*args, **kwargs):
        with keras.name_scope(STREAM_SCOPE):
            return method(*args, **kwargs)
    return scoped


# Significand bits after the leading one, by the float dtypes the stream rounds in.
_SIGNIFICAND_BITS = {"float64": 52, "float32": 23, "float16": 10, "bfloat16": 7}


def _saturation_bound(dtype):
    """The largest integer below STREAM_LIMIT that `dtype` holds, the unchecked cast's clip:
    2**30 - 1 rounds up to 2**30 in float32 (2**30 - 64 is the largest below) and bfloat16,
    and a stream value of 2**30 would wrap int32 in a sum of two. (float16 cannot reach the
    bound: its largest finite value is 65504.)"""
    bits = _SIGNIFICAND_BITS.get(keras.backend.standardize_dtype(dtype), 52)
    return STREAM_LIMIT - max(1, 2 ** (29 - bits))


class FixedPoint:
    """The stream's fixed-point format with `fraction_bits` bits after the binary point.

    Args:
        fraction_bits: k, an int in [0, 24]: the grid step is 2**-k and the range is
            +-2**(30 - k). The default 18 keeps the quantisation of an ImageNet-normalised
            image (largest |value| about 2.64) at 7.2e-7 of its largest value and leaves
            the range +-4096 for the stream (irevnet301's largest |value| measured about 25).

    Example:
    >>> grid = FixedPoint(18)
    >>> n = grid.quantize(keras.ops.convert_to_tensor([0.5, -1.25]))    # int32 [131072, -327680]
    >>> grid.dequantize(n)                               # float32 [0.5, -1.25]
    """

    def __init__(self, fraction_bits=DEFAULT_FRACTION_BITS):
        argument_validation.check_int(fraction_bits, "FixedPoint: `fraction_bits`", 0, 24,
                                      hint=" (grid step 2**-k, range +-2**(30-k))")
        self.fraction_bits = fraction_bits
        self.scale = float(2 ** fraction_bits)
        self.max_value = STREAM_LIMIT / self.scale

    def __repr__(self):
        return f"FixedPoint(fraction_bits={self.fraction_bits})"

    @property
    def step(self):
        """The grid step 2**-k."""
        return 1.0 / self.scale

    # --- floats <-> grid ---------------------------------------------------------------------

    def _scaled(self, x):
        x = ops.convert_to_tensor(x)
        # float32 keeps every bfloat16/float16 value, and scaling by 2**k is exact.
        if keras.backend.standardize_dtype(x.dtype) in ("bfloat16", "float16"):
            x = ops.cast(x, "float32")
        return x * self.scale

    def _to_int(self, scaled, owner, what, finite_only=False):
        """Rounds and checks scaled floats, then casts without ever wrapping.

        `finite_only`: check for NaN/Inf only, for F's output, whose magnitude the
        coupling's checked sum vouches for (see `round_residual`).
        """
        rounded = ops.round(scaled)
        if self.checking(rounded):
            # The check has passed before the cast runs (a failed one discards the
            # result), so every value is finite (and, for a range check, inside the range):
            # a plain cast. Skipping the saturation saves 4 element-wise passes per
            # coupling, about a tenth of a float32 encode on a CPU.
            if finite_only:
                rounded = self._check_finite(rounded, owner, what)
            else:
                rounded = self._check(rounded, owner, what)
            return ops.cast(rounded, "int32")
        bound = _saturation_bound(rounded.dtype)
        # Unchecked (XLA, jax.jit, training): a saturating cast, so that no finite value
        # wraps around int32. A NaN stays NaN through the clip and casts to one fixed
        # integer per platform (-2**31 on x86, 0 on ARM, GPUs and XLA): the training forward
        # and its rebuild in the backward pass run on the same platform, so they agree, and
        # the NaN reaches the gradients through F's recomputation, which the trainer turns
        # into a non-finite loss (ClassificationTask). Mapping NaN to 0 first cost two
        # more passes (IsNan, Select): 7 % of irevnet_cifar's mixed_bfloat16 step.
        return ops.cast(ops.clip(rounded, -bound, bound), "int32")

    def _check(self, values, owner, what):
        """`values` after asserting |values| < 2**30 and no NaN/Inf.

        Reductions only, no element-wise temporaries: a full-size |values| per block kept
        20 MB more alive in irevnet_small's memory-saving gradient (graph mode, batch 32).
        """
        largest, smallest = ops.max(values), ops.min(values)
        ok = ops.logical_and(largest < STREAM_LIMIT, smallest > -STREAM_LIMIT)
        if not is_integer(values):
            # A sum is NaN or Inf if any term is (finite terms this large fail the range).
            ok = ops.logical_and(ok, ops.isfinite(ops.sum(values)))
            problem = "is not finite or leaves"
        else:
            problem = "leaves"
        message = (f"{owner}: {what} {problem} the {_MARKER}'s range "
                   f"+-{self.max_value:g} (fraction_bits={self.fraction_bits}); if the values "
                   f"are finite, build the model with fewer fraction_bits (each one fewer "
                   f"doubles the range). Largest and smallest value in grid units:")
        return backends.ops().checked(values, ok, message, [largest, smallest],
                                      StreamRangeError)

    def _check_finite(self, values, owner, what):
        """`values` after asserting no NaN/Inf (one reduction)."""
        ok = ops.isfinite(ops.sum(values))
        message = (f"{owner}: {what} is not finite (NaN or Inf) in the {_MARKER}; the "
                   f"model's weights or statistics hold NaN/Inf, or F overflowed its dtype.")
        return backends.ops().checked(values, ok, message, [], StreamRangeError)

    @staticmethod
    def checking(values=None):
        """Whether the stream's checks run where `values` are computed: not under XLA or
        another backend's compiler that cannot raise, not in training (see the module
        docstring)."""
        if getattr(_STATE, "disabled", False):
            return False
        return backends.ops().can_check(values)

    @_stream_op
    def quantize(self, x, owner="FixedPoint", what="the input"):
        """Floats -> int32 grid points `round(x * 2**k)`; integers pass through (checked)."""
        x = ops.convert_to_tensor(x)
        if is_integer(x):
            return self.checked(ops.cast(x, "int32"), owner, what)
        return self._to_int(self._scaled(x), owner, what)

    @_stream_op
    def dequantize(self, n, dtype="float32"):
        """Grid points -> floats `n * 2**-k` in `dtype`; floats are returned as `dtype`."""
        n = ops.convert_to_tensor(n)
        if not is_integer(n):
            return ops.cast(n, dtype)
        return ops.cast(n, dtype) * (1.0 / self.scale)

    @_stream_op
    def checked(self, n, owner, what):
        """An int32 stream tensor after asserting that it is inside the range."""
        if not self.checking(n):
            return n
        return self._check(n, owner, what)

    # --- the coupling ------------------------------------------------------------------------

    @_stream_op
    def round_residual(self, f, like, owner="FixedPoint", grid_units=False):
        """F's output on the grid, in the representation of the stream tensor `like`.

        An integer stream gets int32 grid points. A float stream (the plain-autodiff
        training path) gets floats equal to those grid points, with gradient 1: `f + (r - f)`
        is exactly r in IEEE arithmetic, since r - f is exact (r and f are within a
        factor of two, or r is 0) and r is representable.

        `grid_units`: `f` is F * 2**k already (as `IRevBlock.residual` gives it to an
        integer stream), so rounding is all that is left.
        """
        f = ops.convert_to_tensor(f)
        if grid_units and is_integer(like):
            # F is F * 2**k already (in float32 or bfloat16, both exact for it): rounding
            # to an integer in bfloat16 is exact too (every bfloat16 of magnitude >= 256 is
            # an integer), so no cast to float32 and no multiply.
            return self._to_int(f, owner, "F's output", finite_only=True)
        if grid_units:
            f = f * self.step
        scaled = self._scaled(f)
        if is_integer(like):
            # One reduction (NaN/Inf) instead of a range check: the coupling's sum is
            # range-checked right after (`add`, `subtract`), and a finite F beyond int32
            # casts to -2**31 (x86) or saturates to +-(2**31 - 1) (ARM, GPUs), either of
            # which puts the sum with a stream value (|n| < 2**30) outside the range. So
            # every overflow is still an error naming the block, at 3 reductions per
            # coupling instead of 5.
            return self._to_int(scaled, owner, "F's output", finite_only=True)
        r = ops.round(scaled) / self.scale
        f = ops.cast(f, r.dtype)
        return ops.cast(f + ops.stop_gradient(r - f), like.dtype)

    @_stream_op
    def add(self, x, q, owner="FixedPoint"):
        """`x + q` on the stream: an exact integer sum, range-checked; floats add as floats."""
        if is_integer(x):
            return self.checked(x + q, owner, "the coupling's sum")
        return x + q

    @_stream_op
    def subtract(self, y, q, owner="FixedPoint"):
        """`y - q`, the inverse of `add`."""
        if is_integer(y):
            return self.checked(y - q, owner, "the coupling's difference")
        return y - q

    @_stream_op
    def quantize_straight_through(self, x):
        """Floats on the grid (values of `dequantize(quantize(x))`) with gradient 1."""
        x = ops.convert_to_tensor(x)
        scaled = self._scaled(x)
        r = ops.cast(ops.round(scaled) / self.scale, x.dtype)
        return x + ops.stop_gradient(r - x)

    def get_config(self):
        return {"fraction_bits": self.fraction_bits}


def compiling_with_xla():
    """True while TensorFlow traces a function that XLA compiles (jit_compile=True, TPUs);
    False on other backends."""
    if backends.name() != "tensorflow":
        return False
    return backends.ops().compiling_with_xla()
