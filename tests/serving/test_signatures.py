"""The exported signatures, loaded back two ways: TF2's tf.saved_model.load and TF1's graph-mode
session loader (the path TF Serving's C++ loader takes). Compared against the Keras model fed
with numpy-normalised pixels, numpy softmax and numpy crops and resizes."""

import numpy as np
import pytest
import tensorflow as tf

from irevnet_tf import IRevNet
from irevnet_tf.serving import signatures as names
from irevnet_tf.serving.signatures import ServingModule
from tests.helpers.models import identity_twin
from tests.serving.helpers import (center_crop_numpy, encode_image, normalise_numpy, pixels,
                                   resize_bilinear_numpy, softmax_numpy)

PIXEL_TOLERANCE = 1e-5 * 255.0  # 1e-5 relative to the pixel range


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(exported)


def run_signature(loaded, name, **inputs):
    outputs = loaded.signatures[name](**{k: tf.constant(v) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in outputs.items()}


class SessionLoader:
    """Runs signatures through tf.compat.v1.saved_model.loader in a graph-mode Session, by
    the tensor names the SignatureDefs record (as TF Serving does)."""

    def __init__(self, export_dir):
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        with self.graph.as_default():
            meta_graph = tf.compat.v1.saved_model.loader.load(self.session, ["serve"], export_dir)
        self.signature_defs = meta_graph.signature_def

    def run(self, name, **inputs):
        signature = self.signature_defs[name]
        feeds = {signature.inputs[key].name: value for key, value in inputs.items()}
        fetches = {key: info.name for key, info in signature.outputs.items()}
        return self.session.run(fetches, feed_dict=feeds)

    def close(self):
        self.session.close()


@pytest.fixture(scope="module")
def session_loader(exported):
    loader = SessionLoader(exported)
    yield loader
    loader.close()


def expected_classification(model, images):
    logits = identity_twin(model)(normalise_numpy(images), training=False).numpy()
    return logits, softmax_numpy(logits)


def check_classification(outputs, model, images, top_k=5):
    logits, probabilities = expected_classification(model, images)
    np.testing.assert_allclose(outputs["logits"], logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(outputs["probabilities"], probabilities, rtol=1e-5, atol=1e-6)
    assert outputs["classes"].dtype == np.int32
    np.testing.assert_array_equal(outputs["classes"],
                                  np.argsort(-probabilities, axis=-1, kind="stable")[:, :top_k])
    np.testing.assert_allclose(outputs["scores"],
                               np.take_along_axis(probabilities, outputs["classes"], axis=-1),
                               rtol=1e-5, atol=1e-6)


def test_signature_names_dtypes_and_shapes(loaded):
    expected = {
        "serving_default": ({"images": (tf.float32, [None, 32, 32, 3])},
                            {"logits": (tf.float32, [None, 10]),
                             "probabilities": (tf.float32, [None, 10]),
                             "classes": (tf.int32, [None, 5]), "scores": (tf.float32, [None, 5])}),
        "classify_image_bytes": ({"image_bytes": (tf.string, [None])}, None),
        "encode": ({"images": (tf.float32, [None, 32, 32, 3])},
                   {"features": (tf.int32, [None, 4, 4, 192])}),
        "decode": ({"features": (tf.int32, [None, 4, 4, 192])},
                   {"images": (tf.float32, [None, 32, 32, 3]),
                    "pixels": (tf.uint8, [None, 32, 32, 3])}),
        # irevnet_tiny: psi(2) -> 16x16x12; stage 1 (stride 1, 6+6) -> 16x16x12;
        # stage 2 (stride 2, 24+24) -> 8x8x48; stage 3 (stride 2, 96+96) -> 4x4x192.
        "encode_stages": ({"images": (tf.float32, [None, 32, 32, 3])},
                          {"stage_0": (tf.int32, [None, 16, 16, 12]),
                           "stage_1": (tf.int32, [None, 16, 16, 12]),
                           "stage_2": (tf.int32, [None, 8, 8, 48]),
                           "stage_3": (tf.int32, [None, 4, 4, 192])}),
    }
    expected["classify_image_bytes"] = (expected["classify_image_bytes"][0],
                                        expected["serving_default"][1])
    assert sorted(loaded.signatures) == sorted(expected)
    for name, (inputs, outputs) in expected.items():
        function = loaded.signatures[name]
        specs = function.structured_input_signature[1]
        assert {k: (s.dtype, s.shape.as_list()) for k, s in specs.items()} == inputs, name
        got = {k: (s.dtype, s.shape.as_list()) for k, s in function.structured_outputs.items()}
        assert got == outputs, name


def test_decode_inverts_encode(loaded, trained):
    model, _ = trained
    images = pixels(3)
    features = run_signature(loaded, "encode", images=images)["features"]
    # Phi as Python computes it, up to F's rounding in another graph (a grid point here
    # and there); the export's own decode inverts the export's own encode exactly.
    expected = identity_twin(model).encode(normalise_numpy(images)).numpy()
    assert np.abs(features - expected).max() <= 4 and np.mean(features != expected) < 0.05
    back = run_signature(loaded, "decode", features=features)["images"]
    assert np.max(np.abs(back - images)) < PIXEL_TOLERANCE
    # Integer pixels come back as the identical integers.
    integers = np.round(images)
    decoded = run_signature(loaded, "decode",
                            **run_signature(loaded, "encode", images=integers))
    np.testing.assert_array_equal(decoded["pixels"], integers.astype(np.uint8))
    # Not clipped: pixels outside [0, 255] come back too.
    wide = pixels(2) * 2.0 - 100.0
    wide_back = run_signature(loaded, "decode", **run_signature(loaded, "encode", images=wide))
    assert np.max(np.abs(wide_back["images"] - wide)) < 2 * PIXEL_TOLERANCE
    np.testing.assert_array_equal(wide_back["pixels"], np.clip(np.round(wide), 0, 255))


def test_classifier_matches_keras_model(loaded, trained):
    model, _ = trained
    images = pixels(4, seed=2)
    check_classification(run_signature(loaded, "serving_default", images=images), model, images)


def test_attributes_callable_after_load(loaded):
    images = pixels(2)
    np.testing.assert_allclose(loaded.encode(tf.constant(images))["features"].numpy(),
                               run_signature(loaded, "encode", images=images)["features"])


def test_encode_stages_match_the_model(loaded, trained):
    model, _ = trained
    images = pixels(2, seed=3)
    stages = run_signature(loaded, "encode_stages", images=images)
    expected = identity_twin(model).intermediate_representations(normalise_numpy(images),
                                                                 level="stage")
    assert len(stages) == len(expected) == 4
    for index, stage in enumerate(expected):  # Grid points, up to F's rounding elsewhere.
        assert np.abs(stages[f"stage_{index}"] - stage.numpy()).max() <= 4
    # Another graph than encode's, so F may round differently in a few places.
    features = run_signature(loaded, "encode", images=images)["features"]
    assert np.abs(stages["stage_3"] - features).max() <= 4
    assert np.mean(stages["stage_3"] != features) < 0.01


def test_dynamic_batch(loaded):
    for batch in (1, 5):
        outputs = run_signature(loaded, "serving_default", images=pixels(batch))
        assert outputs["logits"].shape == (batch, 10)


def test_session_loader_round_trip_and_classifier(session_loader, trained):
    model, _ = trained
    images = pixels(3, seed=4)
    features = session_loader.run("encode", images=images)["features"]
    back = session_loader.run("decode", features=features)["images"]
    assert np.max(np.abs(back - images)) < PIXEL_TOLERANCE
    check_classification(session_loader.run("serving_default", images=images), model, images)
    encoded = [encode_image(np.round(image)) for image in images]
    bytes_outputs = session_loader.run("classify_image_bytes",
                                       image_bytes=np.array(encoded, dtype=object))
    assert bytes_outputs["logits"].shape == (3, 10)


def test_session_loader_refuses_wrong_shape(session_loader):
    with pytest.raises(ValueError, match="shape"):
        session_loader.run("encode", images=np.zeros((1, 16, 16, 3), np.float32))


def test_image_bytes_are_center_cropped_and_resized(loaded, trained):
    model, _ = trained
    rng = np.random.default_rng(5)
    # 74x60: crop side floor(0.875 * 60) = 52 at rows 11..62, columns 4..55; resized to 32.
    photo = rng.integers(0, 256, (74, 60, 3)).astype(np.uint8)
    expected_images = resize_bilinear_numpy(center_crop_numpy(photo), 32)[None]
    outputs = run_signature(loaded, "classify_image_bytes",
                            image_bytes=np.array([encode_image(photo)], dtype=object))
    logits, _ = expected_classification(model, expected_images.astype(np.float32))
    np.testing.assert_allclose(outputs["logits"], logits, rtol=1e-4, atol=1e-4)
    # A 37x37 image: the crop is exactly 32x32, so no resize, and must match the images path.
    small = rng.integers(0, 256, (37, 37, 3)).astype(np.uint8)
    cropped = small[3:35, 3:35].astype(np.float32)[None]
    check_classification(
        run_signature(loaded, "classify_image_bytes",
                      image_bytes=np.array([encode_image(small)], dtype=object)),
        model, cropped)


def test_jpeg_and_grey_images_are_accepted(loaded):
    rng = np.random.default_rng(6)
    jpeg = encode_image(rng.integers(0, 256, (40, 48, 3)), "JPEG")
    grey = encode_image(rng.integers(0, 256, (36, 36)), "PNG")  # One channel, made RGB.
    outputs = run_signature(loaded, "classify_image_bytes",
                            image_bytes=np.array([jpeg, grey], dtype=object))
    assert outputs["classes"].shape == (2, 5)
    assert np.all(np.isfinite(outputs["logits"]))


def test_bytes_that_are_not_an_image_are_refused(loaded):
    good = encode_image(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match="not an encoded JPEG, PNG"):
        run_signature(loaded, "classify_image_bytes",
                      image_bytes=np.array([good, b"this is not an image"], dtype=object))
    with pytest.raises(tf.errors.InvalidArgumentError):  # A PNG cut short.
        run_signature(loaded, "classify_image_bytes",
                      image_bytes=np.array([good[:40]], dtype=object))


@pytest.mark.parametrize("name, inputs", [
    ("encode", {"images": np.zeros((1, 16, 16, 3), np.float32)}),
    ("encode", {"images": np.zeros((1, 32, 32, 1), np.float32)}),
    ("encode", {"images": np.zeros((1, 32, 32, 3), np.int32)}),
    ("decode", {"features": np.zeros((1, 4, 4, 96), np.float32)}),
    ("serving_default", {"features": np.zeros((1, 4, 4, 192), np.float32)}),
    ("classify_image_bytes", {"image_bytes": np.zeros((1,), np.float32)}),
])
def test_wrong_shape_or_dtype_is_an_error(loaded, name, inputs):
    with pytest.raises((ValueError, TypeError, tf.errors.InvalidArgumentError)):
        run_signature(loaded, name, **inputs)


def test_wrong_shape_error_names_the_input(loaded):
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"images.*\[\?,32,32,3\]"):
        run_signature(loaded, "encode", images=np.zeros((1, 16, 16, 3), np.float32))


def _one_line_message(error):
    """The message a serving client reads: TensorFlow's "assertion failed: [...]" line."""
    text = getattr(error, "message", str(error))
    assert len(text) < 1000 and len(text.splitlines()) <= 8, text  # No tensor dump.
    lines = [line for line in text.splitlines() if line.startswith("assertion failed: [")]
    assert len(lines) == 1, text
    return lines[0]


def test_decode_input_errors_name_the_problem_in_the_callers_units(loaded, session_loader):
    """Through the SavedModel as clients call it (TF2 signatures; TF1's session, TF Serving's
    path): a wrong shape says expected vs got; grid points out of range give the largest
    |value| sent and the accepted range, both in grid units; neither blames the model."""
    phi = run_signature(loaded, "encode", images=pixels(1))["features"]
    height, width, channels = phi.shape[1:]  # What encode makes: what decode expects.
    wrong = np.zeros((2, height - 1, width, channels), np.int32)
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        run_signature(loaded, "decode", features=wrong)
    line = _one_line_message(error.value)
    assert f"must have shape [N, {height}, {width}, {channels}]" in line, line
    assert f"got [2 {height - 1} {width} {channels}]" in line, line

    limit = 2 ** 30  # |n| < 2**30: a sum of two grid points never leaves int32.
    for largest in (limit, -2 ** 31, 2 ** 31 - 1):
        features = phi.copy()
        features[0, 1, 0, 3] = largest
        for run in (lambda: run_signature(loaded, "decode", features=features),
                    lambda: session_loader.run("decode", features=features)):
            with pytest.raises(tf.errors.InvalidArgumentError) as error:
                run()
            line = _one_line_message(error.value)
            assert f"up to |n| = {abs(largest)};" in line, line
            assert f"accepts |n| < {limit}" in line, line
            assert "not finite" not in line and "fewer fraction_bits" not in line, line


def tiny_model(num_classes=3, include_top=True):
    return IRevNet(blocks=(1, 1), strides=(1, 2), channels=(6, 24), init_ds=2,
                   input_shape=(16, 16, 3), num_classes=num_classes, include_top=include_top)


def test_top_k_is_limited_by_the_classes():
    module = ServingModule(tiny_model(num_classes=3))
    outputs = module.classify(tf.constant(pixels(2, size=16)))
    assert outputs["classes"].shape == (2, 3)
    np.testing.assert_array_equal(np.sort(outputs["classes"].numpy(), axis=-1), [[0, 1, 2]] * 2)


def test_model_without_classifier_serves_encode_by_default():
    module = ServingModule(tiny_model(include_top=False))
    signatures = module.signatures()
    assert names.CLASSIFY_IMAGE_BYTES not in signatures
    assert signatures[names.SERVING_DEFAULT] is module.encode


@pytest.mark.parametrize("kwargs, message", [
    (dict(image_size=18), "image_size"),
    (dict(crop_fraction=1.5), "crop_fraction"),
    (dict(top_k=0), "top_k"),
])
def test_bad_serving_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ServingModule(tiny_model(), **kwargs)


def test_non_irevnet_model_is_refused():
    with pytest.raises(TypeError, match="IRevNet"):
        ServingModule(object())


def test_mixed_precision_model_is_exact_at_the_boundary(tmp_path):
    model = IRevNet(blocks=(1, 1), strides=(1, 2), channels=(6, 24), init_ds=2,
                    input_shape=(16, 16, 3), num_classes=4, dtype="mixed_bfloat16",
                    pixel_mean=(120.0,), pixel_std=(60.0,))
    module = ServingModule(model)
    tf.saved_model.save(module, str(tmp_path / "saved"), signatures=module.signatures())
    loaded = tf.saved_model.load(str(tmp_path / "saved"))
    images = np.round(pixels(2, size=16))
    features = run_signature(loaded, "encode", images=images)["features"]
    assert features.dtype == np.int32
    decoded = run_signature(loaded, "decode", features=features)
    back = decoded["images"]
    assert back.dtype == np.float32
    # F in bfloat16, and still exact: only the input's quantisation (60 * 2**-19 pixels)
    # and float32's rounding of pixels near 255 (2**-16) remain.
    assert np.max(np.abs(back - images)) <= 60.0 * 2.0 ** -19 + 2.0 ** -16
    np.testing.assert_array_equal(decoded["pixels"], images.astype(np.uint8))
    logits = run_signature(loaded, "serving_default", images=images)["logits"]
    assert logits.dtype == np.float32 and logits.shape == (2, 4)
