"""Every Keras layer of irevnet_tf.layers passes the shared layer checks (tests/helpers/
layer_test.py): serialisation, `.keras` saving, and forward and inverse against numpy float64
in float32, mixed_bfloat16 and float64. Each layer's own file tests its specifics.

Backend-independent (tests/conftest.py): runs on TensorFlow, JAX and PyTorch."""

import importlib
import inspect
import pkgutil

import keras
import numpy as np
import pytest

import irevnet_tf.layers
from irevnet_tf.layers import BatchNorm, Bottleneck, InjectivePad, IRevBlock, Psi
from irevnet_tf.layers.normalization import PixelNormalization
from tests import helpers, reference
from tests.helpers import layer_test


def _values(shape, seed):
    """float64 values in [-8, 8) on a grid of 1/8: exact in bfloat16 and on the stream's grid."""
    return np.random.default_rng(seed).integers(-64, 64, shape) / 8.0


def _image(channels, size=8):
    return lambda seed: _values((2, size, size, channels), seed)


def _batch_norm(layer):
    return tuple(helpers.to_numpy(v) for v in (
        layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance))


def _make_batch_norm(policy):
    layer = BatchNorm(momentum=0.8, epsilon=1e-3, dtype=policy)
    layer.build((None, 8, 8, 3))
    helpers.randomize_batch_norms(layer, seed=4)
    return layer


def _make_bottleneck(policy):
    layer = Bottleneck(8, stride=2, preactivation=True, mult=2, bn_epsilon=1e-3, dtype=policy)
    layer.build((None, 8, 8, 2))
    helpers.randomize_batch_norms(layer, seed=5)
    return layer


def _block_spec(name, halves, out_channels, stride, first):
    """The exact stream: inputs quantised onto the grid, outputs dequantised to compare;
    F in the policy's precision (the block's own dtype is the float F reads its input in)."""
    def make(policy):
        block = IRevBlock(out_channels, stride=stride, first=first, mult=2, fraction_bits=16,
                          dtype="float64" if policy == "float64" else "float32",
                          bottleneck_dtype=policy)
        block.build([(None, 8, 8, halves[0]), (None, 8, 8, halves[1])])
        helpers.randomize_batch_norms(block, seed=6)
        return block

    def forward(block, pair):
        return reference.block_forward(
            *pair, helpers.bottleneck_weights(block.bottleneck), out_channels, stride,
            preactivation=not first, fraction_bits=block.grid.fraction_bits)

    def inverse(block, outputs):
        return reference.block_inverse(
            *outputs, helpers.bottleneck_weights(block.bottleneck), halves, stride,
            preactivation=not first, fraction_bits=block.grid.fraction_bits)

    return layer_test.LayerSpec(
        name=name, make=make,
        inputs=lambda seed: tuple(_values((2, 8, 8, c), seed + c) for c in halves),
        reference=forward, inverse_reference=inverse,
        to_layer=lambda block, pair: tuple(
            block.grid.quantize(keras.ops.convert_to_tensor(v)) for v in pair),
        # Grid points to reals in numpy (n * 2**-k in float64), not by the grid's own code.
        from_layer=lambda block, pair: tuple(
            helpers.to_numpy(t).astype(np.float64) * 2.0 ** -block.grid.fraction_bits
            for t in pair))


MEAN, STD = (1.5, -2.0, 0.25), (3.0, 0.5, 7.0)

SPECS = [
    layer_test.LayerSpec(
        name="Psi", make=lambda policy: Psi(4, dtype=policy), inputs=_image(3),
        reference=lambda layer, x: reference.space_to_depth(x, 4),
        inverse_reference=lambda layer, y: reference.depth_to_space(y, 4)),
    layer_test.LayerSpec(
        name="InjectivePad", make=lambda policy: InjectivePad(3, dtype=policy),
        inputs=_image(2),
        reference=lambda layer, x: np.concatenate([x, np.zeros(x.shape[:3] + (3,))], -1),
        inverse_reference=lambda layer, y: y[..., :-3]),
    layer_test.LayerSpec(
        name="PixelNormalization",
        make=lambda policy: PixelNormalization(MEAN, STD, dtype=policy), inputs=_image(3),
        reference=lambda layer, x: (x - np.array(MEAN)) / np.array(STD),
        inverse_reference=lambda layer, y: y * np.array(STD) + np.array(MEAN),
        exact_round_trip=False),
    layer_test.LayerSpec(
        name="BatchNorm", make=_make_batch_norm, inputs=_image(3),
        reference=lambda layer, x: reference.batch_norm_inference(
            x, *_batch_norm(layer), eps=layer.epsilon)),
    layer_test.LayerSpec(
        name="Bottleneck", make=_make_bottleneck, inputs=_image(2),
        reference=lambda layer, x: reference.bottleneck(
            x, helpers.bottleneck_weights(layer), 2, preactivation=True, eps=1e-3)),
    _block_spec("IRevBlock_stride2", (2, 2), 8, 2, False),
    _block_spec("IRevBlock_injective", (1, 2), 4, 1, True),
]
IDS = [spec.name for spec in SPECS]


def test_every_layer_has_a_spec():
    """Each Keras layer class defined in irevnet_tf.layers is described in SPECS (FixedPoint,
    a number format and not a layer, has tests/layers/test_fixed_point.py)."""
    defined = set()
    for module_info in pkgutil.iter_modules(irevnet_tf.layers.__path__):
        module = importlib.import_module(f"irevnet_tf.layers.{module_info.name}")
        defined.update(cls for _, cls in inspect.getmembers(module, inspect.isclass)
                       if issubclass(cls, keras.layers.Layer) and cls.__module__ == module.__name__)
    tested = {type(spec.make("float32")) for spec in SPECS}
    assert defined == tested, defined ^ tested


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_serialization(spec):
    layer_test.run_serialization_test(spec)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_keras_file_saving(spec, tmp_path):
    layer_test.run_model_saving_test(spec, tmp_path)


@pytest.mark.parametrize("policy", layer_test.POLICIES)
@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_precision_against_numpy_float64(spec, policy):
    layer_test.run_precision_test(spec, policy)
