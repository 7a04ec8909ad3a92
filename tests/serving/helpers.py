"""Helpers of the serving tests: pixels and independent numpy maths (model directories, twins,
batch-norm statistics and child processes: tests/helpers/)."""

import numpy as np

# Non-trivial normalisation, so that a missing or misplaced (pixels - mean) / std shows.
MEAN = (121.0, 115.5, 101.25)
STD = (61.0, 58.5, 57.0)


def pixels(batch, size=32, channels=3, seed=1):
    """Random float32 pixels in [0, 255]."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 255.0, (batch, size, size, channels)).astype(np.float32)


def normalise_numpy(images):
    """The model input (pixels - mean) / std, computed independently of the export."""
    return ((images.astype(np.float64) - np.array(MEAN)) / np.array(STD)).astype(np.float32)


def softmax_numpy(logits):
    logits = np.asarray(logits, np.float64)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def center_crop_numpy(image, fraction=0.875):
    """The square centre crop the export documents: side floor(fraction * shorter side),
    an odd margin's extra pixel before the crop."""
    height, width = image.shape[:2]
    side = max(int(np.float32(min(height, width)) * np.float32(fraction)), 1)
    top, left = (height - side + 1) // 2, (width - side + 1) // 2
    return image[top:top + side, left:left + side]


def resize_bilinear_numpy(image, size):
    """Bilinear resize with half-pixel centres and no antialiasing, in float64."""
    image = np.asarray(image, np.float64)

    def axis_weights(length):
        position = (np.arange(size) + 0.5) * (length / size) - 0.5
        low = np.floor(position)
        fraction = position - low
        low = low.astype(int)
        return np.clip(low, 0, length - 1), np.clip(low + 1, 0, length - 1), fraction

    top, bottom, fy = axis_weights(image.shape[0])
    left, right, fx = axis_weights(image.shape[1])
    rows = (image[top] * (1 - fy)[:, None, None] + image[bottom] * fy[:, None, None])
    return rows[:, left] * (1 - fx)[None, :, None] + rows[:, right] * fx[None, :, None]


def encode_image(array, image_format="PNG"):
    """Encodes a uint8 HWC array with Pillow (not TensorFlow): the file a client would send."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, np.uint8)).save(buffer, format=image_format)
    return buffer.getvalue()
