"""IRevNet: exact encode/decode, shapes from the paper, Keras integration, clear errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import irevnet_tf
from irevnet_tf import IRevNet, build_irevnet
from tests import helpers, reference

# (name, kwargs): bijective with an initial psi, injective from 3 and from 1 channel.
SMALL_MODELS = [
    ("bijective", dict(blocks=(1, 2), strides=(1, 2), channels=(6, 24), init_ds=2, mult=2,
                       input_shape=(8, 8, 3))),
    ("injective_rgb", dict(blocks=(2, 1), strides=(1, 2), channels=(4, 16), init_ds=0, mult=2,
                           input_shape=(8, 8, 3))),
    ("injective_grey", dict(blocks=(1, 1), strides=(1, 2), channels=(4, 16), init_ds=0, mult=2,
                            input_shape=(8, 8, 1))),
]


def _model(kwargs, **extra):
    model = IRevNet(num_classes=3, dtype="float64", **{**kwargs, **extra})
    helpers.randomize_batch_norms(model)
    return model


@pytest.mark.parametrize("policy", ["float64", "float32", "mixed_bfloat16"])
@pytest.mark.parametrize("name,kwargs", SMALL_MODELS)
def test_decode_inverts_encode_bit_for_bit(name, kwargs, policy):
    model = IRevNet(num_classes=3, dtype=policy, **kwargs)
    helpers.randomize_batch_norms(model)
    x = np.random.default_rng(3).standard_normal((4, *kwargs["input_shape"]))
    x = x.astype(model.float_dtype)  # The images the model sees.
    phi = model.encode(x)
    assert phi.shape == (4, *model.phi_shape) and phi.dtype == model.phi_dtype == tf.int32
    # The grid points of x, by numpy: the quantisation is the only rounding.
    on_grid = reference.round_to_grid(x, model.grid.fraction_bits)
    np.testing.assert_array_equal(model.decode(phi).numpy(), on_grid)
    assert np.abs(on_grid - x).max() <= 2.0 ** -(model.grid.fraction_bits + 1)
    # Float features (the dequantised Phi) decode to the same images.
    np.testing.assert_array_equal(model.decode(model.dequantize(phi)).numpy(), on_grid)
    np.testing.assert_array_equal(model.decode(model.dequantize(phi, tf.float64)).numpy(),
                                  on_grid)


def test_float64_features_keep_grid_points_that_float32_cannot_hold():
    # Phi values past 2**(24 - 18) = 64 have more bits than float32 holds; float64 features
    # (`dequantize(phi, tf.float64)`) must still decode to the grid points numpy computes.
    model = IRevNet(num_classes=3, **SMALL_MODELS[0][1])
    helpers.randomize_batch_norms(model)
    x = np.random.default_rng(4).uniform(-200.0, 200.0, (2, 8, 8, 3)).astype(np.float32)
    phi = model.encode(x)
    features = model.dequantize(phi, tf.float64).numpy()
    assert features.dtype == np.float64
    assert np.any(features.astype(np.float32) != features)  # float32 would lose bits.
    np.testing.assert_array_equal(features * 2.0 ** model.grid.fraction_bits, phi.numpy())
    on_grid = reference.round_to_grid(x, model.grid.fraction_bits)
    np.testing.assert_array_equal(model.decode(features).numpy(), on_grid)


def test_encode_equals_the_numpy_reference_of_stem_and_blocks():
    kwargs = SMALL_MODELS[0][1]
    model = _model(kwargs)
    bits = model.grid.fraction_bits
    x = np.random.default_rng(4).standard_normal((2, *kwargs["input_shape"]))
    stem = reference.space_to_depth(reference.round_to_grid(x, bits), 2)
    pair = (stem[..., :6], stem[..., 6:])
    for block in model.stack:
        pair = reference.block_forward(*pair, helpers.bottleneck_weights(block.bottleneck),
                                       block.out_channels, block.stride,
                                       preactivation=not block.first, fraction_bits=bits)
    # float64 F against numpy's float64 F: a grid point may move by one where F sits on a
    # rounding boundary.
    np.testing.assert_allclose(model.encode(x).numpy(),
                               np.concatenate(pair, axis=-1) * 2.0 ** bits, rtol=0, atol=1)


def test_logits_are_the_head_on_phi():
    model = _model(SMALL_MODELS[1][1])
    x = np.random.default_rng(5).standard_normal((3, 8, 8, 3))
    phi = model.encode(x).numpy() / model.grid.scale
    head = model.head_bn
    h = reference.relu(reference.batch_norm_inference(
        phi, head.gamma.numpy(), head.beta.numpy(), head.moving_mean.numpy(),
        head.moving_variance.numpy()))
    logits = h.mean(axis=(1, 2)) @ model.classifier.kernel.numpy() + model.classifier.bias.numpy()
    np.testing.assert_allclose(model(x).numpy(), logits, rtol=1e-10, atol=1e-12)


def test_intermediate_representations_end_with_phi():
    model = _model(SMALL_MODELS[0][1])
    x = np.random.default_rng(6).standard_normal((2, 8, 8, 3))
    stages = model.intermediate_representations(x)
    blocks = model.intermediate_representations(x, level="block")
    assert len(stages) == 3 and len(blocks) == 4
    np.testing.assert_array_equal(stages[-1].numpy(), model.encode(x).numpy())
    for representation in stages:  # every stage keeps all 8*8*3 numbers
        assert np.prod(representation.shape[1:]) == 8 * 8 * 3


@pytest.mark.parametrize("name,blocks_total,phi", [
    pytest.param("irevnet301", 100, (7, 7, 3072), marks=pytest.mark.slow),
    ("irevnet_cifar", 54, (8, 8, 512))])
def test_named_configurations_match_the_paper(name, blocks_total, phi):
    model = build_irevnet(name)
    params = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    expected = {"irevnet301": 125_120_356, "irevnet_cifar": 6_274_826}[name]
    assert params == expected
    assert len(model.stack) == blocks_total and 3 * blocks_total + 1 in (301, 163)
    assert model.phi_shape == phi


@pytest.mark.slow
def test_irevnet301_phi_shape_loses_and_adds_nothing():
    model = build_irevnet("irevnet301", num_classes=10)
    phi = model.encode(tf.zeros([1, 224, 224, 3]))
    assert phi.shape == (1, 7, 7, 3072) and 7 * 7 * 3072 == 224 * 224 * 3
    shapes = [tuple(r.shape[1:]) for r in model.intermediate_representations(
        tf.zeros([1, 224, 224, 3]))]
    assert shapes == [(112, 112, 12), (56, 56, 48), (28, 28, 192), (14, 14, 768), (7, 7, 3072)]


def test_mixed_precision_runs_F_in_bfloat16_and_stays_exact():
    model = build_irevnet("irevnet_tiny", dtype="mixed_bfloat16")
    helpers.randomize_batch_norms(model)
    x = tf.random.stateless_normal([2, 32, 32, 3], seed=[1, 2])
    phi = model.encode(x)
    assert phi.dtype == tf.int32 and model(x).dtype == tf.float32
    assert model.stack[0].bottleneck.compute_dtype == "bfloat16"
    np.testing.assert_array_equal(model.decode(phi).numpy(),
                                  reference.round_to_grid(x.numpy(), 18).astype(np.float32))


def test_out_of_range_values_are_a_clear_error():
    model = build_irevnet("irevnet_tiny")
    with pytest.raises(irevnet_tf.layers.StreamRangeError,
                       match=r"irevnet_tiny: images .*range \+-4096 \(fraction_bits=18\)"):
        model.encode(tf.fill([1, 32, 32, 3], 5000.0))
    with pytest.raises(irevnet_tf.layers.StreamRangeError, match="not finite"):
        model.encode(tf.fill([1, 32, 32, 3], np.nan))
    with pytest.raises(ValueError, match="fraction_bits"):
        build_irevnet("irevnet_tiny", fraction_bits=40)


def test_decode_input_errors_name_the_problem_in_the_callers_units():
    """decode's own input checks (eager: DecodeInputError; in a tf.function the same text):
    grid points out of range in grid units, float features in real units, NaN/Inf said;
    an in-range Phi that overflows inside the stack keeps FixedPoint's message."""
    model = build_irevnet("irevnet_tiny")
    phi = model.encode(tf.zeros([1, 32, 32, 3])).numpy()
    limit = 2 ** 30
    real_limit = limit / 2 ** 18  # The default fraction_bits: 4096.
    for largest in (limit, -2 ** 31):
        features = phi.copy()
        features[0, 0, 0, 0] = largest
        pattern = rf"up to \|n\| = {abs(largest)}; the exact stream accepts \|n\| < {limit}"
        with pytest.raises(irevnet_tf.layers.DecodeInputError, match=pattern):
            model.decode(features)
        with pytest.raises(tf.errors.InvalidArgumentError, match=pattern):
            tf.function(model.decode)(tf.constant(features))
    floats = model.dequantize(phi).numpy()
    floats[0, 1, 1, 1] = -5000.0
    with pytest.raises(irevnet_tf.layers.DecodeInputError,
                       match=rf"up to \|x\| = 5000; the exact stream accepts \|x\| < "
                             rf"{real_limit:g}"):
        model.decode(floats)
    floats[0, 1, 1, 1] = np.nan
    with pytest.raises(irevnet_tf.layers.DecodeInputError, match="NaN or Inf"):
        model.decode(floats)
    with pytest.raises(tf.errors.InvalidArgumentError, match="NaN or Inf"):
        tf.function(model.decode)(tf.constant(floats))
    # In range as given, out of range inside: the model's overflow, as before.
    with pytest.raises(irevnet_tf.layers.StreamRangeError, match="fewer fraction_bits"):
        model.decode(np.full_like(phi, limit - 1))


def test_bad_input_is_named():
    model = build_irevnet("irevnet_tiny")
    with pytest.raises(ValueError, match=r"images.*multiples of 8"):
        model.encode(tf.zeros([1, 36, 32, 3]))
    with pytest.raises(ValueError, match=r"images.*3 channels"):
        model.encode(tf.zeros([1, 32, 32, 4]))
    with pytest.raises(TypeError, match=r"images.*floating-point"):
        model.encode(tf.zeros([1, 32, 32, 3], tf.int32))
    with pytest.raises(ValueError, match=r"phi.*192 channels"):
        model.decode(tf.zeros([1, 4, 4, 190]))
    with pytest.raises(ValueError, match=r"phi.*rank-4"):
        model.decode(tf.zeros([4, 4, 192]))
    with pytest.raises(TypeError, match=r"phi.*int32 grid points"):
        model.decode(tf.zeros([1, 4, 4, 192], tf.string))


def test_bad_configurations_are_named():
    with pytest.raises(ValueError, match="irevnet301, irevnet_cifar, irevnet_small, irevnet_tiny"):
        build_irevnet("resnet50")
    with pytest.raises(ValueError, match="unknown override.*num_clases"):
        build_irevnet("irevnet_tiny", num_clases=3)
    with pytest.raises(ValueError, match=r"channels\[1\].*24"):
        IRevNet(blocks=(1, 1), strides=(1, 2), channels=(6, 20), init_ds=2, input_shape=(8, 8, 3))
    with pytest.raises(ValueError, match="input_shape.*divisible"):
        IRevNet(blocks=(1,), strides=(2,), channels=(24,), init_ds=2, input_shape=(6, 6, 3))
    with pytest.raises(ValueError, match="one entry per stage"):
        IRevNet(blocks=(1, 1), strides=(2,), channels=(24,), input_shape=(8, 8, 3))


def test_keras_file_round_trip_gives_identical_outputs(tmp_path):
    model = build_irevnet("irevnet_tiny")
    helpers.randomize_batch_norms(model)
    path = str(tmp_path / "tiny.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, IRevNet) and loaded.get_config() == model.get_config()
    x = tf.random.stateless_normal([2, 32, 32, 3], seed=[3, 4])
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
    np.testing.assert_array_equal(loaded.decode(loaded.encode(x)).numpy(),
                                  model.decode(model.encode(x)).numpy())


def test_tensorflow_checkpoint_saves_and_restores_every_block(tmp_path):
    model = build_irevnet("irevnet_tiny")
    helpers.randomize_batch_norms(model)
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    saved = {name for name, _ in tf.train.list_variables(path)}
    # Every weight plus the checkpoint's own save counter.
    assert sum(name.endswith("VARIABLE_VALUE") for name in saved) == len(model.weights) + 1
    restored = build_irevnet("irevnet_tiny")
    tf.train.Checkpoint(model=restored).restore(path).assert_existing_objects_matched()
    for original, copy in zip(model.weights, restored.weights):
        np.testing.assert_array_equal(original.numpy(), copy.numpy(), err_msg=original.path)


def test_backbone_in_a_functional_model_trains_one_step():
    backbone = build_irevnet("irevnet_tiny", include_top=False)
    inputs = keras.Input((32, 32, 3))
    features = backbone(inputs)
    assert tuple(features.shape) == (None, 4, 4, 192)
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(features))
    classifier = keras.Model(inputs, outputs)
    classifier.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = backbone.stack[0].bottleneck.conv1.kernel.numpy().copy()
    classifier.fit(np.random.rand(4, 32, 32, 3), np.array([0, 1, 0, 1]), epochs=1, verbose=0)
    assert not np.array_equal(before, backbone.stack[0].bottleneck.conv1.kernel.numpy())


def test_summary_lists_the_blocks():
    lines = []
    build_irevnet("irevnet_tiny").summary(print_fn=lambda line, **_: lines.append(line))
    text = "\n".join(lines)
    assert "stage1_block1" in text and "classifier" in text and "80,143" in text
    assert irevnet_tf.config_names() == sorted(irevnet_tf.CONFIGS)
