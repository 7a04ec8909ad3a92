"""Turning tf.data's errors about bad input into errors that say which data and what is wrong.

A corrupt JPEG or a truncated TFRecord file surfaces from deep inside tf.data as a bare
InvalidArgumentError or DataLossError that names neither the dataset nor the file. The
trainer catches such errors and raises `describe_input_error(error, name, data_dir, split)`
(or iterates with `checked_iterator`), which says which dataset, directory and files were
being read, what kind of problem it is, and, for TFRecord shards, scans them to name the
file and record at fault.
"""

import tensorflow as tf

from irevnet_tf.data import info as info_lib
from irevnet_tf.data import tfrecord

CORRUPT_FILE = "corrupt_file"
NOT_AN_EXAMPLE = "not_an_example"
BAD_IMAGE = "bad_image"
BAD_LABEL = "bad_label"
OTHER = "other"

_KIND_TEXT = {
    CORRUPT_FILE: "a TFRecord file is truncated or corrupt",
    NOT_AN_EXAMPLE: "a record is not a valid tf.Example with the expected features",
    BAD_IMAGE: "an image does not decode (not a valid JPEG/PNG)",
    BAD_LABEL: "a label is out of range",
    OTHER: "reading the input failed",
}
_NOT_AN_EXAMPLE_SIGNS = ("Could not parse example input", "Can't parse serialized",
                         "is required but could not be found", "ParseExample",
                         "ParseSingleExample")
_BAD_IMAGE_SIGNS = ("image file format", "JPEG", "jpeg", "PNG", "png", "DecodeImage",
                    "DecodeAndCropJpeg", "ExtractJpegShape", "DecodeJpeg", "DecodePng")
DEFAULT_LOCATE_SECONDS = 60.0


class InputDataError(RuntimeError):
    """Reading a dataset's input failed; the message names the data and the problem.

    Attributes:
        dataset, data_dir, split: what was being read.
        kind: one of "corrupt_file", "not_an_example", "bad_image", "bad_label", "other".
        location: a `tfrecord.CorruptRecord` (file and record) when it was found, else None.
    """

    def __init__(self, message, *, dataset, data_dir, split, kind, location=None):
        super().__init__(message)
        self.dataset = dataset
        self.data_dir = data_dir
        self.split = split
        self.kind = kind
        self.location = location


def classify_input_error(error):
    """The kind of input problem a TensorFlow error reports (one of the kinds above)."""
    text = str(error)
    if isinstance(error, tf.errors.DataLossError) or "truncated record" in text \
            or "corrupted record" in text:
        return CORRUPT_FILE
    if tfrecord.LABEL_ERROR_MARKER in text:
        return BAD_LABEL
    if any(sign in text for sign in _NOT_AN_EXAMPLE_SIGNS):
        return NOT_AN_EXAMPLE
    if any(sign in text for sign in _BAD_IMAGE_SIGNS):
        return BAD_IMAGE
    return OTHER


def describe_input_error(error, name, data_dir=None, split=None, *, locate=True,
                         max_seconds=DEFAULT_LOCATE_SECONDS):
    """An `InputDataError` that explains `error`, raised while reading dataset `name`.

    Use as `raise data.describe_input_error(e, name, data_dir, split) from e`.

    Args:
        error: the exception (usually a tf.errors.OpError) raised while iterating.
        name, data_dir, split: the arguments the dataset was built with (split None: all).
        locate: for TFRecord shards, scan them for the bad file and record (each file
            is read once; the scan stops after `max_seconds`).
    """
    if isinstance(error, InputDataError):
        return error
    kind = classify_input_error(error)
    source = _describe_source(name, data_dir, split)
    lines = [f"Reading {source} failed: {_KIND_TEXT[kind]}."]
    location = None
    if name == info_lib.IMAGENET_TFRECORD:
        if kind == NOT_AN_EXAMPLE:
            lines.append(f"Each record must be a tf.Example with {tfrecord.IMAGE_KEY} (bytes) and "
                         f"{tfrecord.LABEL_KEY} (int64, 1..1000).")
        if locate and kind != OTHER and data_dir:
            location, note = _locate(data_dir, split, max_seconds)
            lines.append(note)
    elif kind != OTHER and name not in (info_lib.SYNTHETIC, info_lib.DIGITS):
        lines.append("The prepared tensorflow-datasets files may be damaged: delete them and "
                     f"prepare the dataset again (`tfds build {name} --data_dir ...`).")
    lines.append(f"TensorFlow reported: {tfrecord.first_line(error)}")
    return InputDataError("\n".join(lines), dataset=name, data_dir=data_dir, split=split,
                          kind=kind, location=location)


def checked_iterator(dataset, name, data_dir=None, split=None, **describe_kwargs):
    """Iterates `dataset`, re-raising input errors as `describe_input_error(...)` would."""
    iterator = iter(dataset)
    while True:
        try:
            element = next(iterator)
        except StopIteration:
            return
        except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as error:
            raise describe_input_error(error, name, data_dir, split, **describe_kwargs) from error
        yield element


def _describe_source(name, data_dir, split):
    split_text = f"split {split!r}" if split else "all splits"
    if name == info_lib.IMAGENET_TFRECORD:
        splits = [split] if split in tfrecord.SPLIT_PATTERNS else list(tfrecord.SPLIT_PATTERNS)
        patterns = []
        for each in splits:
            pattern = tfrecord.split_pattern(data_dir or "", each)
            try:
                count = len(tf.io.gfile.glob(pattern))
            except tf.errors.OpError:
                count = "?"
            patterns.append(f"{count} files matching {pattern}")
        return (f"dataset {name!r} ({split_text}, data_dir={data_dir!r}: "
                f"{'; '.join(patterns)})")
    if name == info_lib.DIGITS:
        return f"the embedded digits ({split_text})"
    if name == info_lib.SYNTHETIC:
        return f"synthetic data ({split_text})"
    return f"tensorflow-datasets dataset {name!r} ({split_text}, data_dir={data_dir!r})"


def _locate(data_dir, split, max_seconds):
    splits = ([split] if split in tfrecord.SPLIT_PATTERNS else list(tfrecord.SPLIT_PATTERNS))
    try:
        result = tfrecord.find_corrupt_records(data_dir, splits, max_seconds=max_seconds)
    except (OSError, ValueError, tf.errors.OpError) as error:
        return None, f"Could not scan the files for the bad record ({error})."
    if result.corrupt is not None:
        return result.corrupt, f"Found: {result.corrupt}."
    if result.files_scanned < result.files_total:
        return None, (f"Scanned {result.files_scanned} of {result.files_total} files in "
                      f"{max_seconds:g} s without finding the bad record; scan them all with "
                      "irevnet_tf.data.find_corrupt_records(data_dir, splits).")
    return None, (f"All {result.files_total} files read cleanly on a second pass: the "
                  "problem may be intermittent (storage) rather than in the data.")
