"""Preprocessing against numpy: pixels out (no normalisation: the model does it), crop
geometry, flips, padding crops, digits; and the same result eagerly and inside Dataset.map."""

import numpy as np
import pytest
import tensorflow as tf

from irevnet_tf.data import preprocessing


def numpy_pixels(pixels):
    """What every preprocessing family returns: float pixels in [0, 255], not normalised."""
    return np.asarray(pixels, np.float64)


def numpy_centre_crop(image, fraction=0.875):
    """The central square, side floor(fraction * shorter side); odd margins: extra pixel first."""
    height, width = image.shape[:2]
    side = max(1, int(np.floor(fraction * min(height, width))))
    top = int(np.ceil((height - side) / 2))
    left = int(np.ceil((width - side) / 2))
    return image[top:top + side, left:left + side]


def rng_image(height, width, channels=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, channels), np.uint8)


def test_no_family_normalises():
    assert not hasattr(preprocessing, "normalize")
    image = rng_image(32, 32)
    for output in (preprocessing.cifar_eval(tf.constant(image), 32),
                   preprocessing.imagenet_eval(tf.constant(image), 28)):
        assert output.dtype == tf.float32
        assert 0.0 <= float(tf.reduce_min(output)) and float(tf.reduce_max(output)) <= 255.0


@pytest.mark.parametrize("height,width", [(40, 64), (41, 30), (17, 47)])
def test_imagenet_eval_centre_crop_of_png_matches_numpy(height, width):
    # With image_size equal to the crop side the resize is the identity, so the output is
    # exactly the normalised centre crop.
    image = rng_image(height, width, seed=height)
    side = int(np.floor(0.875 * min(height, width)))
    output = preprocessing.imagenet_eval(tf.io.encode_png(image), side).numpy()
    np.testing.assert_allclose(output, numpy_pixels(numpy_centre_crop(image)), atol=1e-4)
    # The same from the decoded image.
    decoded = preprocessing.imagenet_eval(tf.constant(image), side).numpy()
    np.testing.assert_allclose(decoded, output, atol=1e-6)


def test_jpeg_decode_and_crop_equals_full_decode_then_crop():
    encoded = tf.io.encode_jpeg(rng_image(75, 100, seed=3), quality=90)
    full = tf.io.decode_jpeg(encoded, channels=3).numpy()
    side = int(np.floor(0.875 * 75))
    output = preprocessing.imagenet_eval(encoded, side).numpy()
    np.testing.assert_allclose(output, numpy_pixels(numpy_centre_crop(full)), atol=1e-4)


@pytest.mark.parametrize("fraction", [0.5, 1.0])
def test_evaluation_pixels_crop_fraction_matches_numpy(fraction):
    image = rng_image(30, 45, seed=4)
    side = int(np.floor(fraction * 30))
    output = preprocessing.evaluation_pixels(tf.io.encode_png(image), side,
                                             crop_fraction=fraction).numpy()
    np.testing.assert_array_equal(output, numpy_centre_crop(image, fraction))
    with pytest.raises(ValueError, match="crop_fraction"):
        preprocessing.evaluation_pixels(tf.constant(image), side, crop_fraction=0.0)


def test_centre_crop_window_geometry():
    window = preprocessing.centre_crop_window([375, 500, 3]).numpy()
    side = int(0.875 * 375)  # 328
    assert list(window) == [(375 - side + 1) // 2, (500 - side + 1) // 2, side, side]
    # A one-pixel-high image still gives a one-pixel crop.
    assert list(preprocessing.centre_crop_window([1, 5, 3]).numpy()) == [0, 2, 1, 1]


def test_random_resized_crop_windows_respect_area_and_aspect_ratio():
    height, width = 375, 500
    centre = list(preprocessing.centre_crop_window([height, width, 3]).numpy())
    areas, sampled = [], 0
    for index in range(150):
        y, x, h, w = preprocessing.random_resized_crop_window(
            [height, width, 3], tf.constant([7, index])).numpy()
        assert 0 <= y and 0 <= x and y + h <= height and x + w <= width
        if [y, x, h, w] == centre:
            continue
        sampled += 1
        area = h * w / (height * width)
        areas.append(area)
        # One pixel of rounding on each side.
        assert 0.08 * (1 - 2 / min(h, w)) <= area <= 1.0
        assert 0.75 - 1.5 / h <= w / h <= 4 / 3 + 1.5 / h
    assert sampled > 120
    assert min(areas) < 0.3 and max(areas) > 0.7  # The whole range is used.


def test_random_flip_flips_about_half_the_time():
    image = rng_image(4, 6)
    flips = 0
    for index in range(60):
        output = preprocessing.random_flip(image, tf.constant([1, index])).numpy()
        if np.array_equal(output, image[:, ::-1]):
            flips += 1
        else:
            np.testing.assert_array_equal(output, image)
    assert 15 <= flips <= 45


def test_imagenet_train_is_a_flipped_or_unflipped_resized_crop():
    image = rng_image(48, 64, seed=5)
    image_size = 24
    for index in range(6):
        seed = tf.constant([3, index], tf.int64)
        output = preprocessing.imagenet_train(tf.io.encode_png(image), seed, image_size).numpy()
        crop_seed, _ = tf.unstack(preprocessing.split_seed(seed, 2))
        y, x, h, w = preprocessing.random_resized_crop_window(image.shape, crop_seed).numpy()
        resized = tf.image.resize(image[y:y + h, x:x + w].astype(np.float32),
                                  [image_size, image_size]).numpy()
        expected = numpy_pixels(resized)
        assert output.shape == (image_size, image_size, 3)
        assert (np.allclose(output, expected, atol=1e-4)
                or np.allclose(output, expected[:, ::-1], atol=1e-4))


def test_cifar_train_is_a_window_of_the_zero_padded_image():
    image = rng_image(32, 32, seed=9)
    padded = np.pad(image, [(4, 4), (4, 4), (0, 0)]).astype(np.float64)
    seen_flip = seen_plain = False
    for index in range(12):
        output = numpy_pixels(preprocessing.cifar_train(
            tf.constant(image), tf.constant([0, index]), 32).numpy())
        matches = [(dy, dx, flipped) for dy in range(9) for dx in range(9)
                   for flipped in (False, True)
                   if np.allclose(output, (padded[dy:dy + 32, dx:dx + 32][:, ::-1] if flipped
                                           else padded[dy:dy + 32, dx:dx + 32]), atol=1e-3)]
        assert matches, "not a 32x32 window of the padded image"
        seen_flip |= any(flipped for _, _, flipped in matches)
        seen_plain |= any(not flipped for _, _, flipped in matches)
    assert seen_flip and seen_plain


def test_cifar_eval_is_the_pixels():
    image = rng_image(32, 32)
    np.testing.assert_allclose(
        preprocessing.cifar_eval(tf.constant(image), 32).numpy(),
        numpy_pixels(image), atol=1e-4)


def test_digits_scaling_and_shift_without_flip():
    rng = np.random.default_rng(0)
    digit = rng.integers(0, 17, (8, 8), np.uint8)
    pixels = digit.astype(np.float64)[..., None] * 255.0 / 16.0
    # At 8x8 the bilinear resize is the identity.
    np.testing.assert_allclose(preprocessing.digits_eval(digit, 8).numpy(),
                               pixels, atol=1e-5)
    padded = np.pad(pixels, [(1, 1), (1, 1), (0, 0)])  # digits_shift(8) == 1
    for index in range(10):
        output = preprocessing.digits_train(digit, tf.constant([2, index]), 8).numpy()
        windows = [padded[dy:dy + 8, dx:dx + 8] for dy in range(3) for dx in range(3)]
        assert any(np.allclose(output, window, atol=1e-3) for window in windows)
    upsampled = preprocessing.digits_eval(digit, 32).numpy()
    assert upsampled.shape == (32, 32, 1)
    assert upsampled.min() >= -1e-3 and upsampled.max() <= 255.0 + 1e-3


def test_grey_jpeg_gives_three_equal_channels_and_tiny_images_work():
    grey = tf.io.encode_jpeg(rng_image(30, 41, channels=1))
    output = numpy_pixels(preprocessing.imagenet_eval(grey, 16).numpy())
    np.testing.assert_allclose(output[..., 0], output[..., 1], atol=1e-3)
    np.testing.assert_allclose(output[..., 0], output[..., 2], atol=1e-3)
    tiny = tf.io.encode_jpeg(rng_image(9, 13))
    for index in range(5):
        train = preprocessing.imagenet_train(tiny, tf.constant([0, index]), 32)
        assert train.shape == (32, 32, 3) and np.isfinite(train.numpy()).all()
    assert preprocessing.imagenet_eval(tiny, 32).shape == (32, 32, 3)


@pytest.mark.parametrize("kind", ["imagenet_jpeg", "imagenet_decoded", "cifar", "digits"])
def test_eager_equals_dataset_map(kind):
    seed = tf.constant([11, 5], tf.int64)
    if kind == "imagenet_jpeg":
        image = tf.io.encode_jpeg(rng_image(50, 70))
        function = lambda im, s: preprocessing.imagenet_train(im, s, 32)  # noqa: E731
    elif kind == "imagenet_decoded":
        image = tf.constant(rng_image(50, 70))
        function = lambda im, s: preprocessing.imagenet_train(im, s, 32)  # noqa: E731
    elif kind == "cifar":
        image = tf.constant(rng_image(32, 32))
        function = lambda im, s: preprocessing.cifar_train(im, s, 32)  # noqa: E731
    else:
        image = tf.constant(np.random.default_rng(0).integers(0, 17, (8, 8), np.uint8))
        function = lambda im, s: preprocessing.digits_train(im, s, 32)  # noqa: E731
    eager = function(image, seed).numpy()
    mapped = next(iter(tf.data.Dataset.from_tensors((image, seed)).map(function))).numpy()
    np.testing.assert_array_equal(eager, mapped)
