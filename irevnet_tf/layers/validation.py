"""Shared input checks for the invertible layers: clear, early errors that name the argument."""

import keras


def check_rank4(tensor, argument, owner):
    """Raises ValueError unless `tensor` is a rank-4 NHWC tensor."""
    rank = tensor.shape.rank if hasattr(tensor.shape, "rank") else len(tensor.shape)
    if rank != 4:
        raise ValueError(
            f"{owner}: `{argument}` must be a rank-4 NHWC tensor "
            f"(batch, height, width, channels), got shape {tuple(tensor.shape)}."
        )


def check_floating(tensor, argument, owner):
    """Raises TypeError unless `tensor` has a floating-point dtype."""
    dtype = keras.backend.standardize_dtype(tensor.dtype)
    if dtype not in ("float16", "bfloat16", "float32", "float64"):
        raise TypeError(
            f"{owner}: `{argument}` must be a floating-point tensor "
            f"(float16, bfloat16, float32 or float64), got dtype {dtype}."
        )


def check_divisible_spatial(tensor, factor, argument, owner):
    """Raises ValueError if a known height or width is not a multiple of `factor`."""
    height, width = tensor.shape[1], tensor.shape[2]
    bad = [(name, size) for name, size in (("height", height), ("width", width))
           if size is not None and size % factor]
    if bad:
        raise ValueError(
            f"{owner}: `{argument}` has shape {tuple(tensor.shape)}; its height and width "
            f"must be multiples of {factor} for the invertible down-sampling (psi), but "
            + ", ".join(f"{name} {size}" for name, size in bad)
            + " is not. Resize or pad the images; psi never crops silently."
        )


def check_channels(tensor, expected, argument, owner):
    """Raises ValueError if the known channel count of `tensor` is not `expected`."""
    channels = tensor.shape[-1]
    if channels is not None and channels != expected:
        raise ValueError(
            f"{owner}: `{argument}` must have {expected} channels, "
            f"got shape {tuple(tensor.shape)}."
        )
