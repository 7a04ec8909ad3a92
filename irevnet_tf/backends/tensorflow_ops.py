"""TensorFlow's own forms of the backend-specific operations (see `irevnet_tf.backends`).

The fast path: fused batch-norm kernels (`FusedBatchNormV3`, which TensorFlow's graph
optimiser fuses with the ReLU after it and, in float32, with the convolution before it),
`space_to_depth`, stateless dropout, graph assertions for the exact stream's checks (they
raise from a `tf.function`, a SavedModel and TF Serving alike) and `tf.function` for the
model's inference paths.
"""

import weakref

import tensorflow as tf

try:  # Private, and stable since TF 2.0: whether XLA compiles the graph being built.
    from tensorflow.python.ops import control_flow_util as _control_flow_util
except ImportError:  # pragma: no cover
    _control_flow_util = None

# Graph-mode checks can be asserted inside compiled graphs (not under XLA).
GRAPH_ASSERTIONS = True
# The errors a failed graph assertion raises (re-raised as the package's own errors).
ASSERTION_ERRORS = (tf.errors.InvalidArgumentError,)


def compiling_with_xla():
    """True while tracing a function that XLA compiles (jit_compile=True, TPUs)."""
    if _control_flow_util is None or tf.executing_eagerly():
        return False
    return bool(_control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))


def can_check(values=None):
    """Whether a stream check can run where `values` are computed: everywhere but XLA."""
    return not compiling_with_xla()


def is_concrete(tensor):
    """Whether `tensor`'s values can be read now (eager execution)."""
    return tf.executing_eagerly() and not tf.is_symbolic_tensor(tensor)


def checked(tensor, ok, message, values, error_type):
    """`tensor`, after asserting `ok` (a scalar bool): an op in the graph, so that a
    compiled graph, a SavedModel and TF Serving raise too (InvalidArgumentError, whose
    message `error_type.reraise_from` turns back into `error_type`)."""
    del error_type
    check = tf.debugging.Assert(ok, [message, *values], name="check_stream_range")
    with tf.control_dependencies([check]):
        return tf.identity(tensor)


def space_to_depth(x, block_size):
    return tf.nn.space_to_depth(x, block_size)


def depth_to_space(x, block_size):
    return tf.nn.depth_to_space(x, block_size)


def stateless_dropout(x, rate, seed):
    """Dropout whose mask is a function of `seed` (an int tensor of shape [2]) alone."""
    return tf.nn.experimental.stateless_dropout(x, rate=rate, seed=tf.cast(seed, tf.int32))


def fold_in(seed, index):
    """A seed for item `index` derived from the [2] seed `seed`."""
    return tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int32), index)


def fused_batch_norm(inputs, gamma, beta, mean=None, variance=None, epsilon=1e-5):
    """TensorFlow's fused batch norm over the last axis of NHWC `inputs` (float32, bfloat16
    or float16; statistics and parameters float32). Without `mean`/`variance` (training)
    it returns `(outputs, batch mean, biased batch variance)`, else the outputs."""
    training = mean is None
    outputs, batch_mean, batch_variance = tf.compat.v1.nn.fused_batch_norm(
        inputs, gamma, beta, mean=mean, variance=variance, epsilon=epsilon,
        data_format="NHWC", is_training=training)
    if not training:
        return outputs
    # The kernel returns the variance with Bessel's correction (n / (n - 1)); the moving
    # statistics here, as Keras', follow the biased variance it normalised with.
    shape = tf.shape(inputs)
    count = tf.cast(shape[0] * shape[1] * shape[2], tf.float32)
    batch_variance = batch_variance * (tf.maximum(count - 1.0, 0.0) / count)
    return outputs, tf.stop_gradient(batch_mean), tf.stop_gradient(batch_variance)


def dense(tensor):
    """`tensor`: TensorFlow's convolutions return dense NHWC tensors."""
    return tensor


def with_static_channels(tensor, channels):
    """`tensor` with a static channel count (Keras layers need it at trace time)."""
    if tensor.shape.rank == 4 and tensor.shape[-1] is None:
        return tf.ensure_shape(tensor, [None, None, None, channels])
    return tensor


def compile_inference(model, method):
    """`model.<method>` as a `tf.function`, traced once per input signature.

    Through a weak reference: a bound method would keep the model alive forever.
    """
    owner = weakref.ref(model)
    return tf.function(lambda tensor: getattr(owner(), method)(tensor), reduce_retracing=True)


def in_chunks(function, tensor, chunk, out_shape_fn, output_dtype):
    """`function` on `tensor` `chunk` images at a time (the last chunk zero-padded);
    `out_shape_fn(chunk_shape)` gives a chunk's output shape."""
    count = tf.shape(tensor)[0]
    padding = (chunk - count % chunk) % chunk
    tensor = tf.pad(tensor, [[0, padding], [0, 0], [0, 0], [0, 0]])
    height, width = tensor.shape[1], tensor.shape[2]
    chunks = tf.reshape(tensor, [-1, chunk, *tensor.shape[1:]]) if None not in (
        height, width) else tf.reshape(tensor, tf.concat([[-1, chunk], tf.shape(tensor)[1:]], 0))
    out_shape = out_shape_fn((chunk, *tensor.shape[1:]))
    outputs = tf.map_fn(function, chunks,
                        fn_output_signature=tf.TensorSpec(out_shape, output_dtype))
    shape = tf.shape(outputs)
    outputs = tf.reshape(outputs, tf.concat([[shape[0] * chunk], shape[2:]], 0))
    return outputs[:count]


# Imported with this module, not while a graph is traced (autograph would try to convert
# the import machinery): the stack's memory-saving gradient on TensorFlow.
from irevnet_tf.backends import tensorflow_gradient  # noqa: E402,F401  pylint: disable=wrong-import-position
