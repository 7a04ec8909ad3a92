"""The backend-specific operations written once in `keras.ops`, for JAX and PyTorch.

`jax_ops` and `torch_ops` take these and replace what their backend does better (or what
only it can do: compiling, random masks from a seed, raising from a check).
"""

from keras import ops

# No checks inside compiled graphs unless the backend module says how.
GRAPH_ASSERTIONS = False
ASSERTION_ERRORS = ()
# No fused batch-norm kernel: `BatchNorm` takes its element-wise path.
fused_batch_norm = None


def checked(tensor, ok, message, values, error_type):
    """`tensor`, after checking `ok` on concrete values: raises `error_type` if it fails."""
    if not bool(ops.convert_to_numpy(ok)):
        shown = ", ".join(str(ops.convert_to_numpy(v)) for v in values)
        raise error_type(f"{message} {shown}")
    return tensor


def space_to_depth(x, block_size):
    """`out[n, h, w, (i * b + j) * C + c] = x[n, h * b + i, w * b + j, c]` (TensorFlow's
    ordering, so that weights and Phis are the same on every backend)."""
    b = block_size
    _, height, width, channels = x.shape
    x = ops.reshape(x, (-1, height // b, b, width // b, b, channels))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (-1, height // b, width // b, b * b * channels))


def depth_to_space(x, block_size):
    """The inverse of `space_to_depth`."""
    b = block_size
    _, height, width, channels = x.shape
    x = ops.reshape(x, (-1, height, width, b, b, channels // (b * b)))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (-1, height * b, width * b, channels // (b * b)))


def dense(tensor):
    """`tensor`, laid out for fast element-wise work (already so on this backend)."""
    return tensor


def with_static_channels(tensor, channels):
    """Shapes are concrete on this backend."""
    del channels
    return tensor


def in_chunks(function, tensor, chunk, out_shape_fn, output_dtype):
    """`function` on `tensor` `chunk` images at a time (the last chunk zero-padded)."""
    del out_shape_fn, output_dtype  # Shapes are concrete here.
    count = tensor.shape[0]
    padding = (-count) % chunk
    tensor = ops.pad(tensor, [[0, padding], [0, 0], [0, 0], [0, 0]])
    chunks = ops.reshape(tensor, (-1, chunk, *tensor.shape[1:]))
    outputs = ops.map(function, chunks)
    outputs = ops.reshape(outputs, (-1, *outputs.shape[2:]))
    return outputs[:count]