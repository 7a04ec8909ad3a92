"""Files to client requests and answers to files, for the command-line client (export/client.py).

`classify_image_bytes` reads image files (JPEG, PNG, ...) as bytes; every other signature
reads one `.npy` array (or several, concatenated on the batch axis): pixels in [0, 255] for
`serving_default`/`classify`, `encode` and `encode_stages`, features for `decode`.
"""

import os

import numpy as np

from irevnet_tf import files
from irevnet_tf.serving import signatures as names

# Command-line names of the signatures ("classify" is serving_default).
SIGNATURES = {
    "classify": names.SERVING_DEFAULT,
    names.SERVING_DEFAULT: names.SERVING_DEFAULT,
    names.CLASSIFY_IMAGE_BYTES: names.CLASSIFY_IMAGE_BYTES,
    names.ENCODE: names.ENCODE,
    names.DECODE: names.DECODE,
    names.ENCODE_STAGES: names.ENCODE_STAGES,
}


def signature_name(choice):
    if choice not in SIGNATURES:
        raise ValueError(f"`signature` must be one of {', '.join(sorted(SIGNATURES))}, got "
                         f"{choice!r}.")
    return SIGNATURES[choice]


def load_inputs(signature, paths):
    """`{input name: numpy array}` for `signature` from the files at `paths`."""
    signature = signature_name(signature)
    if not paths:
        raise ValueError("No input files given: pass image files (classify_image_bytes) or "
                         ".npy arrays (the other signatures).")
    missing = [path for path in paths if not os.path.isfile(path)]
    if missing:
        raise FileNotFoundError(f"Input file(s) not found: {', '.join(missing)}.")
    if signature == names.CLASSIFY_IMAGE_BYTES:
        encoded = []
        for path in paths:
            with open(path, "rb") as handle:
                encoded.append(handle.read())
        return {names.IMAGE_BYTES: np.array(encoded, dtype=object)}
    arrays = []
    for path in paths:
        if not path.endswith(".npy"):
            raise ValueError(f"Signature {signature!r} takes .npy arrays, got {path!r} (use "
                             "--signature=classify_image_bytes for image files).")
        array = np.load(path, allow_pickle=False)
        arrays.append(array[None] if array.ndim == 3 else array)
    batch = np.concatenate(arrays, axis=0)
    if signature == names.DECODE:  # int32 grid points, as `encode` returned them.
        if not np.issubdtype(batch.dtype, np.integer):
            raise ValueError(f"Signature 'decode' takes the int32 grid points that 'encode' "
                             f"returns, got dtype {batch.dtype} in {', '.join(paths)}.")
        return {names.FEATURES: batch.astype(np.int32)}
    return {names.IMAGES: batch.astype(np.float32)}


def summarise(outputs):
    """A short human-readable account of a response: top classes, or shapes and ranges."""
    lines = []
    if "classes" in outputs and "scores" in outputs:
        for index, (classes, scores) in enumerate(zip(outputs["classes"], outputs["scores"])):
            ranked = ", ".join(f"{c} ({s:.3f})" for c, s in zip(classes, scores))
            lines.append(f"image {index}: top classes {ranked}")
        return "\n".join(lines)
    for key, value in sorted(outputs.items()):
        lines.append(f"{key}: shape {value.shape}, dtype {value.dtype}, range "
                     f"[{value.min():.4g}, {value.max():.4g}]")
    return "\n".join(lines)


def save_outputs(path, outputs):
    """Writes the answer's arrays to an .npz file, atomically (`irevnet_tf.files`)."""
    with files.atomic_path(path, what="the answer's arrays") as temporary:
        with open(temporary, "wb") as handle:
            np.savez(handle, **outputs)
