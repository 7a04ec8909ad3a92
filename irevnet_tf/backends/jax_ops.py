"""JAX's forms of the backend-specific operations (see `irevnet_tf.backends`).

Inference runs under `jax.jit` as a pure function of the model's variable values (bound to
the layers through `keras.StatelessScope`, so that a trained model never runs on stale
constants). The exact stream's checks run eagerly on concrete arrays, and inside the
model's compiled inference through `jax.experimental.checkify`, which turns a failed check
into the same `StreamRangeError` after the call; inside any other `jax.jit` (a user's,
Keras' `train_step`) the casts saturate instead, as under XLA in TensorFlow.
"""

import threading
import weakref

import jax
import jax.numpy as jnp
import keras
from jax.experimental import checkify

from irevnet_tf.backends.portable_ops import (ASSERTION_ERRORS, GRAPH_ASSERTIONS,  # noqa: F401
                                              dense, depth_to_space, fused_batch_norm, in_chunks,
                                              space_to_depth, with_static_channels)
from irevnet_tf.backends import portable_ops

_STATE = threading.local()


def _checkified():
    return getattr(_STATE, "checkify", False)


def can_check(values=None):
    """Concrete arrays are checked in Python; traced ones inside the model's own compiled
    inference (checkify); anywhere else under `jax.jit` the casts saturate."""
    return values is None or is_concrete(values) or _checkified()


def is_concrete(tensor):
    return not isinstance(tensor, jax.core.Tracer)


def checked(tensor, ok, message, values, error_type):
    if is_concrete(ok):
        return portable_ops.checked(tensor, ok, message, values, error_type)
    # checkify formats its message with str.format: keep our braces literal.
    text = message.replace("{", "{{").replace("}", "}}") + " {}" * len(values)
    checkify.check(ok, text, *values)
    return tensor


def stateless_dropout(x, rate, seed):
    """Dropout whose mask is a function of `seed` (a [2] key) alone."""
    return keras.random.dropout(x, rate, seed=jnp.asarray(seed, jnp.uint32))


def fold_in(seed, index):
    return jax.random.fold_in(jnp.asarray(seed, jnp.uint32), index)


def compile_inference(model, method):
    """`model.<method>` under `jax.jit` (with the stream's checks through checkify), as a
    function of the model's current variable values."""
    owner = weakref.ref(model)

    def pure(values, tensor):
        variables = owner().variables
        previous = _checkified()
        _STATE.checkify = True
        try:
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return getattr(owner(), method)(tensor)
        finally:
            _STATE.checkify = previous

    compiled = jax.jit(checkify.checkify(pure))

    def run(tensor):
        error, outputs = compiled([v.value for v in owner().variables], tensor)
        message = error.get()
        if message:
            from irevnet_tf.layers.fixed_point import StreamRangeError
            raise StreamRangeError(message.splitlines()[0].split(" (check failed at")[0])
        return outputs

    return run
