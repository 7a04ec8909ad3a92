"""The serving graph's image preprocessing is the input pipeline's evaluation preprocessing:
`classify_image_bytes` prepares an image exactly as `imagenet_eval` does before normalising."""

import numpy as np
import pytest
import tensorflow as tf

from irevnet_tf.data import preprocessing
from irevnet_tf.serving import image_bytes
from tests.serving.helpers import center_crop_numpy, encode_image


def _photo(height, width, seed):
    # Smooth content, so that JPEG keeps it close to the original (not only the same path).
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = 127 + 100 * np.sin(x[..., None] / 7.0 + y[..., None] / 11.0 + np.arange(3))
    return np.clip(base + rng.normal(0, 3, (height, width, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("image_format", ["PNG", "JPEG"])
@pytest.mark.parametrize("height, width, fraction", [(57, 80, 0.875), (90, 61, 0.6)])
def test_serving_decode_is_the_pipelines_evaluation(image_format, height, width, fraction):
    encoded = encode_image(_photo(height, width, seed=height), image_format)
    served = image_bytes.decode_and_center_crop(tf.constant(encoded), 24, 3, fraction).numpy()
    # Bit-equal, JPEGs included: both decode them inside the crop window (which changes the
    # window's edge pixels by a few levels against decoding the whole image, then cropping).
    evaluated = preprocessing.evaluation_pixels(tf.constant(encoded), 24, 3, fraction).numpy()
    np.testing.assert_array_equal(served, evaluated)
    if fraction == preprocessing.CENTRE_CROP_FRACTION:
        np.testing.assert_array_equal(
            preprocessing.imagenet_eval(tf.constant(encoded), 24).numpy(), served)


def test_crop_is_the_documented_square():
    # With the output size equal to the crop side the resize is the identity.
    image = _photo(45, 70, seed=0)
    side = int(45 * 0.875)
    served = image_bytes.decode_and_center_crop(tf.constant(encode_image(image)), side, 3)
    np.testing.assert_array_equal(served.numpy(), center_crop_numpy(image))
    with pytest.raises(ValueError, match="decode_and_center_crop: `crop_fraction`"):
        image_bytes.decode_and_center_crop(tf.constant(encode_image(image)), side, 3, 1.5)
