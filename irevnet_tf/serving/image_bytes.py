"""Encoded images (JPEG, PNG, GIF, BMP) to model-sized pixel arrays, inside the serving graph.

REST clients send image files as `{"b64": ...}`; the `classify_image_bytes` signature turns
each one into a `[size, size, channels]` float32 array of pixels in [0, 255] here, so that
the server needs nothing but the SavedModel. Preprocessing is the input pipeline's
evaluation preprocessing, `irevnet_tf.data.preprocessing.evaluation_pixels`: a square centre
crop of `crop_fraction` of the shorter side (0.875 for ImageNet), resized bilinearly to `size`
(no antialiasing, as `tf.image.resize` does by default).
"""

import tensorflow as tf

from irevnet_tf.data import preprocessing

# Channel counts that tf.io.decode_image can produce.
DECODABLE_CHANNELS = (1, 3, 4)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def is_encoded_image(image_bytes):
    """Whether a scalar string starts like a JPEG, PNG, GIF or BMP file (boolean scalar)."""
    return tf.reduce_any(tf.stack([
        tf.io.is_jpeg(image_bytes),
        tf.equal(tf.strings.substr(image_bytes, 0, 8), _PNG_SIGNATURE),
        tf.equal(tf.strings.substr(image_bytes, 0, 3), b"GIF"),
        tf.equal(tf.strings.substr(image_bytes, 0, 2), b"BM"),
    ]))


def decode_and_center_crop(image_bytes, size, channels,
                           crop_fraction=preprocessing.CENTRE_CROP_FRACTION):
    """One encoded image (scalar tf.string) -> float32 `[size, size, channels]` in [0, 255].

    Raises (at run time) an InvalidArgumentError that says so when the bytes are not an
    encoded JPEG, PNG, GIF or BMP image.
    """
    if channels not in DECODABLE_CHANNELS:
        raise ValueError(f"decode_and_center_crop: `channels` must be one of "
                         f"{DECODABLE_CHANNELS}, got {channels!r}.")
    preprocessing.check_crop_fraction(crop_fraction, "decode_and_center_crop")
    check = tf.debugging.Assert(
        is_encoded_image(image_bytes),
        ["image_bytes: an element is not an encoded JPEG, PNG, GIF or BMP image (send the "
         "file's bytes, base64-encoded as {\"b64\": ...} over REST); its length in bytes is",
         tf.strings.length(image_bytes)],
        name="image_bytes_are_an_image")
    with tf.control_dependencies([check]):
        # The input pipeline's own evaluation preprocessing, from the bytes as it decodes
        # them (JPEGs inside the crop window), so a served image equals an evaluated one
        # bit for bit; decoding the whole JPEG first would change the crop's edge pixels.
        pixels = preprocessing.evaluation_pixels(image_bytes, size, channels, crop_fraction)
    return tf.ensure_shape(pixels, [size, size, channels])


def decode_batch(image_bytes, size, channels, crop_fraction=preprocessing.CENTRE_CROP_FRACTION):
    """A `[batch]` tf.string vector of encoded images -> float32 `[batch, size, size, channels]`."""
    return tf.map_fn(
        lambda element: decode_and_center_crop(element, size, channels, crop_fraction),
        image_bytes,
        fn_output_signature=tf.TensorSpec([size, size, channels], tf.float32))
