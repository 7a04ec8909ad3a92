"""Image preprocessing for the input pipelines: pure TensorFlow functions of one example.

Every function here works eagerly and inside `tf.data.Dataset.map` and gives the same result
in both for the same `seed`. Randomness is stateless: each random function takes a `seed`,
a `[2]` integer tensor (the pipelines derive it from the example's position), so that a
seeded pipeline is exactly reproducible.

Every family returns float32 pixels in [0, 255]: the model's input. The model normalises
them itself (`IRevNet(pixel_mean=..., pixel_std=...)`, the dataset info's mean/std), so
nothing here normalises.

Three families, chosen by `DatasetInfo.preprocessing`:
- "imagenet": training takes a random-resized crop (8-100 % of the area, aspect ratio
  3/4-4/3) and a random horizontal flip; evaluation takes the central 87.5 % of the shorter
  side. Both resize (bilinear) to `image_size`. JPEGs are decoded only inside the crop window.
- "cifar": training pads 4 zero pixels on each side, takes a random crop and a random flip
  (as in the authors' CIFAR training); evaluation leaves the image as it is.
- "digits": 8x8 digits in [0, 16] are scaled to [0, 255] and upsampled (bilinear); training
  shifts them by a few pixels (pad + random crop) and never flips them.
"""

import tensorflow as tf

from irevnet_tf import validation

# Evaluation crops the central 87.5 % of the shorter side (224 of 256, the usual ratio).
CENTRE_CROP_FRACTION = 0.875
RANDOM_CROP_AREA_RANGE = (0.08, 1.0)
RANDOM_CROP_ASPECT_RATIO_RANGE = (3.0 / 4.0, 4.0 / 3.0)
RANDOM_CROP_MAX_ATTEMPTS = 10
CIFAR_PADDING = 4
DIGITS_MAX_VALUE = 16


# ---------------------------------------------------------------------------------------------
# Building blocks.

def split_seed(seed, num):
    """`num` independent stateless seeds ([num, 2]) derived from one."""
    return tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=num)


def decode_image(encoded, channels=3):
    """Decodes JPEG, PNG, GIF (first frame) or BMP bytes to uint8 [H, W, channels].

    Grey-scale images become `channels` identical channels when `channels` is 3.
    """
    return tf.io.decode_image(encoded, channels=channels, expand_animations=False)


def centre_crop_window(image_shape, fraction=CENTRE_CROP_FRACTION):
    """`[offset_y, offset_x, height, width]` (int32) of the central square crop.

    Its side is `fraction` of the shorter side (at least one pixel); odd margins put the
    extra pixel before the crop.
    """
    height, width = _height_width(image_shape)
    shorter = tf.minimum(height, width)
    side = tf.maximum(1, tf.cast(fraction * tf.cast(shorter, tf.float32), tf.int32))
    offset_y = (height - side + 1) // 2
    offset_x = (width - side + 1) // 2
    return tf.stack([offset_y, offset_x, side, side])


def check_crop_fraction(crop_fraction, caller="evaluation_pixels"):
    """Refuses a crop fraction outside (0, 1] (a Python number) with a message naming `caller`."""
    validation.check_number(crop_fraction, f"{caller}: `crop_fraction`", 0.0, 1.0,
                            low_open=True)


def evaluation_pixels(image, image_size, channels=3, crop_fraction=CENTRE_CROP_FRACTION):
    """The evaluation preprocessing: central square crop, bilinear resize; pixels in [0, 255].

    The one definition shared by the input pipeline (`imagenet_eval`) and the serving
    graph (`classify_image_bytes`, irevnet_tf/serving/image_bytes.py), so that a served
    image is prepared as an evaluated one.

    Args:
        image: encoded bytes (string scalar; JPEGs are decoded inside the crop only) or
            an image [H, W, C] of any real dtype.
        image_size: output height and width.
        channels: channels to decode encoded bytes to.
        crop_fraction: the square's side as a fraction of the shorter side (0.875: 224 of
            256, the release's and the usual ImageNet evaluation).
    Returns:
        float32 [image_size, image_size, C], not normalised.
    """
    check_crop_fraction(crop_fraction)
    cropped = _as_image(image, lambda shape: centre_crop_window(shape, crop_fraction), channels)
    return resize(cropped, image_size)


def random_resized_crop_window(image_shape, seed, area_range=RANDOM_CROP_AREA_RANGE,
                               aspect_ratio_range=RANDOM_CROP_ASPECT_RATIO_RANGE,
                               max_attempts=RANDOM_CROP_MAX_ATTEMPTS):
    """`[offset_y, offset_x, height, width]` (int32) of an Inception-style random crop.

    The crop covers `area_range` of the image with width/height in `aspect_ratio_range`.
    When no such crop is found in `max_attempts` (tiny or very elongated images), the
    sampler returns the whole image; the centre crop is used instead, as in evaluation.
    """
    image_shape = tf.cast(image_shape, tf.int32)
    whole_image = tf.constant([[[0.0, 0.0, 1.0, 1.0]]], tf.float32)
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        image_shape, bounding_boxes=whole_image, seed=tf.cast(seed, tf.int64),
        min_object_covered=area_range[0], aspect_ratio_range=aspect_ratio_range,
        area_range=area_range, max_attempts=max_attempts, use_image_if_no_bounding_boxes=True)
    sampled = tf.stack([begin[0], begin[1], size[0], size[1]])
    height, width = _height_width(image_shape)
    failed = tf.logical_and(tf.equal(size[0], height), tf.equal(size[1], width))
    return tf.where(failed, centre_crop_window(image_shape), sampled)


def decode_and_crop(encoded, window_fn, channels=3):
    """Decodes only the window `window_fn(image_shape)` of an encoded image: uint8 [h, w, C].

    JPEGs are decoded inside the window (`decode_and_crop_jpeg`, much cheaper than a full
    decode); other formats are decoded whole, then cropped.
    """

    def jpeg():
        window = window_fn(tf.io.extract_jpeg_shape(encoded))
        return tf.io.decode_and_crop_jpeg(encoded, window, channels=channels)

    def other_format():
        image = decode_image(encoded, channels)
        return crop(image, window_fn(tf.shape(image)))

    return tf.cond(tf.io.is_jpeg(encoded), jpeg, other_format)


def crop(image, window):
    """`image[y:y + h, x:x + w]` for `window = [y, x, h, w]`."""
    return tf.slice(image, tf.stack([window[0], window[1], 0]),
                    tf.stack([window[2], window[3], -1]))


def resize(image, image_size):
    """Bilinear resize to [image_size, image_size, C], float32."""
    resized = tf.image.resize(tf.cast(image, tf.float32), [image_size, image_size],
                              method="bilinear")
    return tf.ensure_shape(resized, [image_size, image_size, image.shape[-1]])


def random_flip(image, seed):
    """Flips left-right with probability 1/2."""
    return tf.image.stateless_random_flip_left_right(image, seed=tf.cast(seed, tf.int64))


def random_pad_crop(image, seed, padding):
    """Pads `padding` zero pixels on each side, then takes a random crop of the original size."""
    size = image.shape
    padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
    return tf.image.stateless_random_crop(padded, size, seed=tf.cast(seed, tf.int64))


def _height_width(image_shape):
    image_shape = tf.cast(image_shape, tf.int32)
    return image_shape[0], image_shape[1]


def _as_image(image_or_encoded, window_fn, channels):
    """Crops a decoded image, or decodes-and-crops encoded bytes (a string scalar)."""
    if image_or_encoded.dtype == tf.string:
        return decode_and_crop(image_or_encoded, window_fn, channels)
    return crop(image_or_encoded, window_fn(tf.shape(image_or_encoded)))


# ---------------------------------------------------------------------------------------------
# The per-dataset-family preprocessing.

def imagenet_train(image, seed, image_size, channels=3):
    """Random-resized crop, resize, random flip.

    Args:
        image: encoded bytes (string scalar; JPEG, PNG, ...) or a uint8 [H, W, C] image.
        seed: `[2]` integer stateless seed.
        image_size: output height and width.
        channels: C, the channels encoded bytes are decoded to.
    Returns:
        float32 pixels [image_size, image_size, C] in [0, 255].
    """
    crop_seed, flip_seed = tf.unstack(split_seed(seed, 2))
    cropped = _as_image(image, lambda shape: random_resized_crop_window(shape, crop_seed),
                        channels)
    image = random_flip(resize(cropped, image_size), flip_seed)
    return tf.ensure_shape(image, [image_size, image_size, channels])


def imagenet_eval(image, image_size, channels=3):
    """`evaluation_pixels` (central 87.5 % of the shorter side, resize); float32 pixels
    [S, S, C]."""
    return tf.ensure_shape(evaluation_pixels(image, image_size, channels),
                           [image_size, image_size, channels])


def cifar_train(image, seed, image_size, flip=True, padding=CIFAR_PADDING):
    """Pad 4 zero pixels + random crop, random flip (unless `flip=False`); float32 pixels.

    `image` is uint8 [H, W, C]; it is resized to `image_size` first when it differs.
    """
    crop_seed, flip_seed = tf.unstack(split_seed(seed, 2))
    image = random_pad_crop(_resize_if_needed(image, image_size), crop_seed, padding)
    if flip:
        image = random_flip(image, flip_seed)
    return tf.cast(image, tf.float32)


def cifar_eval(image, image_size):
    """Float32 pixels [S, S, C] (resized to `image_size` when it differs)."""
    return _resize_if_needed(image, image_size)


def digits_pixels(image, image_size):
    """8x8 digits in [0, 16] -> float32 [image_size, image_size, 1] in [0, 255] (bilinear)."""
    image = tf.cast(image, tf.float32) * (255.0 / DIGITS_MAX_VALUE)
    if image.shape.rank == 2:
        image = image[..., tf.newaxis]
    return resize(image, image_size)


def digits_shift(image_size):
    """Pixels of random translation in digits training: 2 at 32x32, scaled with the size."""
    return max(1, image_size // 16)


def digits_train(image, seed, image_size):
    """Upsample, random translation by up to `digits_shift(image_size)` pixels; float32
    pixels."""
    return random_pad_crop(digits_pixels(image, image_size), seed, digits_shift(image_size))


def digits_eval(image, image_size):
    """Upsample; float32 pixels [image_size, image_size, 1] in [0, 255]."""
    return digits_pixels(image, image_size)


def _resize_if_needed(image, image_size):
    if image.shape[0] == image_size and image.shape[1] == image_size:
        return tf.cast(image, tf.float32)
    return resize(image, image_size)
