"""The checks every layer of `irevnet_tf.layers` passes, in the manner of keras-hub's
`TestCase.run_layer_test` / `run_serialization_test` / `run_precision_test` /
`run_model_saving_test`: a layer is described once (`LayerSpec`), and
tests/layers/test_layer_base.py runs each check on every description.

- serialisation: `get_config` -> `from_config` gives the same config, `keras.saving`'s
  serialise/deserialise gives the same class and config, and the rebuilt layer with the
  same weights computes the same outputs bit for bit;
- `.keras` saving: a functional model around the layer, saved and loaded, computes the same
  outputs bit for bit;
- precision: under each dtype policy (float32, mixed_bfloat16, float64) the outputs agree
  with an independent numpy float64 reference within the precision's tolerance, and so does
  `inverse` where the layer has one (and `inverse(call(x))` is x: exactly for the layers
  that move values, within the tolerance for the affine ones).

References are computed from the layer's weights by tests/reference.py (numpy, float64),
never from the layer's own code path; tolerances are relative to the largest reference value.

Backend-neutral: tensors are made with `keras.ops.convert_to_tensor` and read back with
`tests.helpers.to_numpy`, so the same checks run on TensorFlow, JAX and PyTorch
(tests/conftest.py). JAX computes in float64 only with `jax_enable_x64`; without it the
float64 policy computes in float32, so that case is skipped there (`float64_unavailable`).
"""

import dataclasses
from typing import Callable, Optional

import keras
import numpy as np
import pytest

from tests.helpers import to_numpy

POLICIES = ("float32", "mixed_bfloat16", "float64")
# max |layer - reference| / max(1, max |reference|), by policy: float64 is the reference's
# own arithmetic in another order; float32 and bfloat16 (8 significant bits, 2**-8 = 4e-3
# per rounding) a few roundings deep. Measured on the specs of tests/layers/
# test_layer_base.py: at most 3e-16, 4.6e-7 and 5.7e-3 (Bottleneck); a 0.1 % change of F is
# 1.7e-3 in float32.
TOLERANCE = {"float64": 1e-12, "float32": 1e-5, "mixed_bfloat16": 1.5e-2}


@dataclasses.dataclass
class LayerSpec:
    """One layer under test.

    Attributes:
        name: the test id.
        make: policy name -> a built layer with trained-like weights (deterministic).
        make, inputs: constructor arguments away from their defaults, so that a
            `get_config` that forgets one changes the outputs.
        inputs: seed -> float64 numpy inputs (an array, or a tuple for a pair), exactly
            representable in bfloat16 so that every policy sees the same values.
        reference: (layer, numpy inputs) -> float64 numpy outputs, independently of the layer.
        inverse_reference: (layer, numpy outputs) -> numpy inputs, or None for a layer
            without `inverse`.
        to_layer: (layer, numpy inputs) -> what the layer is called on (default: tensors
            in the layer's compute dtype; the exact stream quantises).
        from_layer: (layer, outputs) -> float64 numpy (default: a plain conversion; the
            exact stream dequantises).
        exact_round_trip: whether `inverse(call(x))` must be x bit for bit.
        keras_input_dtype: dtype of the `.keras` model's inputs.
    """

    name: str
    make: Callable
    inputs: Callable
    reference: Callable
    inverse_reference: Optional[Callable] = None
    to_layer: Optional[Callable] = None
    from_layer: Optional[Callable] = None
    exact_round_trip: bool = True
    keras_input_dtype: str = "float32"


def _map(function, value):
    return tuple(function(v) for v in value) if isinstance(value, (tuple, list)) else function(
        value)


def to_layer(spec, layer, inputs):
    if spec.to_layer is not None:
        return spec.to_layer(layer, inputs)
    return _map(lambda v: keras.ops.convert_to_tensor(v, layer.compute_dtype), inputs)


def from_layer(spec, layer, outputs):
    if spec.from_layer is not None:
        return spec.from_layer(layer, outputs)
    return _map(to_numpy, outputs)


def _numpy(value):
    return value if isinstance(value, np.ndarray) else to_numpy(keras.ops.convert_to_tensor(
        value))


def float64_unavailable():
    """Why the float64 policy cannot compute in float64 on this backend, or None."""
    if keras.backend.backend() == "jax":
        import jax

        if not jax.config.jax_enable_x64:
            return "JAX computes float64 as float32 unless jax_enable_x64 is set"
    return None


def assert_close(actual, expected, tolerance, what):
    actual, expected = _map(_numpy, actual), _map(_numpy, expected)
    if isinstance(expected, tuple):
        assert isinstance(actual, tuple) and len(actual) == len(expected), what
        for index, (a, e) in enumerate(zip(actual, expected)):
            assert_close(a, e, tolerance, f"{what}[{index}]")
        return
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    scale = max(1.0, float(np.max(np.abs(expected))) if expected.size else 1.0)
    error = float(np.max(np.abs(actual.astype(np.float64) - expected))) if expected.size else 0.0
    assert error <= tolerance * scale, f"{what}: max error {error:.3g} > {tolerance:g} * {scale:.3g}"


def assert_equal(actual, expected, what):
    actual, expected = _map(_numpy, actual), _map(_numpy, expected)
    if isinstance(expected, tuple):
        for index, (a, e) in enumerate(zip(actual, expected)):
            np.testing.assert_array_equal(a, e, err_msg=f"{what}[{index}]")
    else:
        np.testing.assert_array_equal(actual, expected, err_msg=what)


def call(layer, inputs):
    return layer(inputs, training=False) if _takes_training(layer) else layer(inputs)


def _takes_training(layer):
    import inspect

    return "training" in inspect.signature(layer.call).parameters


def run_serialization_test(spec):
    layer = spec.make("float32")
    config = layer.get_config()
    rebuilt = type(layer).from_config(config)
    assert rebuilt.get_config() == config
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(revived) is type(layer) and revived.get_config() == config
    inputs = to_layer(spec, layer, spec.inputs(0))
    expected = call(layer, inputs)
    call(rebuilt, inputs)  # Builds it.
    rebuilt.set_weights(layer.get_weights())
    assert_equal(call(rebuilt, inputs), expected, f"{spec.name} from_config")


def run_model_saving_test(spec, directory):
    layer = spec.make("float32")
    sample = spec.inputs(0)
    symbolic = _map(lambda v: keras.Input(v.shape[1:], dtype=spec.keras_input_dtype), sample)
    outputs = call(layer, list(symbolic) if isinstance(symbolic, tuple) else symbolic)
    model = keras.Model(list(symbolic) if isinstance(symbolic, tuple) else symbolic,
                        list(outputs) if isinstance(outputs, tuple) else outputs)
    values = _map(lambda v: keras.ops.convert_to_tensor(v, spec.keras_input_dtype), sample)
    feed = list(values) if isinstance(values, tuple) else values
    expected = model(feed)
    path = str(directory / f"{spec.name}.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    saved_layers = [l for l in loaded.layers if type(l) is type(layer)]
    assert len(saved_layers) == 1 and saved_layers[0].get_config() == layer.get_config()
    assert_equal(loaded(feed), expected, f"{spec.name} .keras")


def run_precision_test(spec, policy):
    if policy == "float64" and float64_unavailable():
        pytest.skip(float64_unavailable())
    layer = spec.make(policy)
    tolerance = TOLERANCE[policy]
    inputs = spec.inputs(1)
    outputs = call(layer, to_layer(spec, layer, inputs))
    numpy_outputs = from_layer(spec, layer, outputs)
    assert_close(numpy_outputs, spec.reference(layer, inputs), tolerance,
                 f"{spec.name} {policy} forward")
    if spec.inverse_reference is None:
        assert not hasattr(layer, "inverse"), f"{spec.name} has an inverse: give its reference"
        return
    restored = from_layer(spec, layer, layer.inverse(outputs))
    assert_close(restored, spec.inverse_reference(layer, numpy_outputs), tolerance,
                 f"{spec.name} {policy} inverse")
    if spec.exact_round_trip:
        assert_equal(restored, from_layer(spec, layer, to_layer(spec, layer, inputs)),
                     f"{spec.name} {policy} inverse(call(x))")
    else:
        assert_close(restored, inputs, tolerance, f"{spec.name} {policy} inverse(call(x))")
