"""The few operations whose best (or only) form differs between Keras backends.

Layers and the model are written in `keras.ops`; what a backend needs of its own lives in one
small module per backend, behind the same names:
    tensorflow_ops  TensorFlow's fused kernels (batch norm, space-to-depth), graph assertions
                    for the exact stream's checks, `tf.function`, `tf.map_fn`;
    jax_ops         `jax.jit` over Keras' stateless variables, eager checks on concrete arrays;
    torch_ops       eager PyTorch with Python-side checks;
and the memory-saving gradient in `tensorflow_gradient`, `jax_gradient`, `torch_gradient`
(`tf.custom_gradient`, `jax.custom_vjp`, `torch.autograd.Function`), which
`irevnet_tf.stack.run_memory_saving` dispatches to.

`ops()` returns the module of the backend Keras runs on (`KERAS_BACKEND`), imported on first
use, so that a JAX or PyTorch process never imports TensorFlow for the layers.
"""

import importlib
import sys

import keras

_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


def name():
    """The Keras backend in use: "tensorflow", "jax" or "torch"."""
    backend = keras.backend.backend()
    if backend not in _MODULES:
        raise RuntimeError(
            f"irevnet_tf runs on the Keras backends {', '.join(sorted(_MODULES))}; "
            f"KERAS_BACKEND is {backend!r}.")
    return backend


def _module(concern):
    full_name = f"irevnet_tf.backends.{_MODULES[name()]}_{concern}"
    # sys.modules first: these are called while graphs are traced, where TensorFlow's
    # autograph would otherwise try (and fail) to convert importlib's machinery.
    module = sys.modules.get(full_name)
    return module if module is not None else importlib.import_module(full_name)


def ops():
    """The backend-specific operations of the active Keras backend."""
    return _module("ops")


def gradient():
    """The memory-saving gradient module of the active Keras backend."""
    return _module("gradient")


def load():
    """Imports the active backend's operations (`import irevnet_tf` does, before any graph
    is traced)."""
    ops()
