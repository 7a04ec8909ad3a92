"""ImageNet as TFRecord shards in the common layout ("imagenet_tfrecord").

`data_dir` (a local directory or a bucket such as gs://...) holds `train-*` and
`validation-*` files (e.g. train-00000-of-01024) of serialised `tf.Example`s, as written by
the usual ImageNet conversion scripts (TensorFlow's build_imagenet_data.py, the TPU
imagenet_to_gcs.py). This module reads two features:
    image/encoded      bytes: the JPEG (a PNG also works)
    image/class/label  int64: the class, 1-BASED (1..1000); label 0 is reserved for
                       "background" by those scripts. The pipeline returns `label - 1`, so
                       the model sees 0..999 in the scripts' class order (sorted synset ids).
A label outside 1..1000 stops the pipeline with an error saying so (0-based shards would
otherwise silently shift every class by one).

Files are sharded across input pipelines (`input_pipeline_id::num_input_pipelines` of the
sorted file list) and read in parallel (`interleave`). `find_corrupt_records` locates a bad
file or record for `describe_input_error`.
"""

import dataclasses
import os
import time

import tensorflow as tf
from absl import logging

SPLIT_PATTERNS = {"train": "train-*", "validation": "validation-*"}
IMAGE_KEY = "image/encoded"
LABEL_KEY = "image/class/label"
FEATURES = {
    IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
    LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
}
FIRST_LABEL = 1  # The conversion scripts number the 1000 classes 1..1000.
NUM_CLASSES = 1000
LABEL_ERROR_MARKER = "label out of range"  # Also in the tensorflow-datasets label check.
INTERLEAVE_CYCLE_LENGTH = 16
READ_BUFFER_BYTES = 8 * 1024 * 1024


def split_pattern(data_dir, split):
    """The glob pattern of a split's files, e.g. `<data_dir>/train-*`."""
    if split not in SPLIT_PATTERNS:
        raise ValueError(f"imagenet_tfrecord: `split` must be one of {sorted(SPLIT_PATTERNS)}, "
                         f"got {split!r}.")
    return os.path.join(data_dir, SPLIT_PATTERNS[split])


def list_files(data_dir, split):
    """The split's files, sorted (so that every host shards the same list the same way)."""
    if not data_dir:
        raise ValueError("imagenet_tfrecord needs `data_dir`: the directory (local or gs://...) "
                         "holding the train-* and validation-* TFRecord shards.")
    pattern = split_pattern(data_dir, split)
    try:
        files = sorted(tf.io.gfile.glob(pattern))
    except tf.errors.OpError as error:
        raise FileNotFoundError(f"imagenet_tfrecord: cannot list {pattern!r} ({error.message})."
                                ) from None
    if not files:
        raise FileNotFoundError(
            f"imagenet_tfrecord: no files match {pattern!r}. `data_dir` must hold the "
            f"{split} shards named {SPLIT_PATTERNS[split]} (e.g. {split}-00000-of-01024).")
    return files


def parse_example(serialized):
    """A serialised tf.Example -> `(encoded image bytes, 0-based int32 label)`."""
    features = tf.io.parse_single_example(serialized, FEATURES)
    label = features[LABEL_KEY]
    in_range = tf.logical_and(label >= FIRST_LABEL, label < FIRST_LABEL + NUM_CLASSES)
    check = tf.debugging.Assert(in_range, [
        f"imagenet_tfrecord: {LABEL_ERROR_MARKER}: {LABEL_KEY} must be in {FIRST_LABEL}..."
        f"{FIRST_LABEL + NUM_CLASSES - 1} (1-based, as the usual conversion scripts write "
        "it); got", label])
    with tf.control_dependencies([check]):
        label = tf.cast(label - FIRST_LABEL, tf.int32)
    return features[IMAGE_KEY], label


def shard_files(files, pipeline_id, num_pipelines):
    """`(files of this pipeline, whether records still need sharding)`.

    With fewer files than pipelines every pipeline reads all files and keeps every
    `num_pipelines`-th record instead (correct, but each host reads everything).
    """
    if num_pipelines <= 1:
        return files, False
    if len(files) >= num_pipelines:
        return files[pipeline_id::num_pipelines], False
    logging.warning("imagenet_tfrecord: %d files for %d input pipelines; sharding by record, "
                    "so every pipeline reads all files.", len(files), num_pipelines)
    return files, True


def records(files, *, shuffle, seed, deterministic, pipeline_id=0, num_pipelines=1):
    """One epoch of serialised records from `files` (already this pipeline's share).

    Args:
        shuffle: shuffle the file order: with `seed` (a `[2]` stateless seed) always the same
            way; with `seed=None` differently in every iteration.
        deterministic: keep a reproducible order; otherwise files are read in parallel
            in whatever order they come.
        pipeline_id, num_pipelines: when given (> 1), keep every `num_pipelines`-th record:
            the fallback of `shard_files` for fewer files than pipelines.
    """
    files = tf.constant(files)
    if shuffle and seed is not None:
        files = tf.gather(files, tf.argsort(tf.random.stateless_uniform(
            tf.shape(files), seed=tf.cast(seed, tf.int64))))
    file_names = tf.data.Dataset.from_tensor_slices(files)
    if shuffle and seed is None:
        file_names = file_names.shuffle(len(files), reshuffle_each_iteration=True)
    shard_records = num_pipelines > 1
    read = lambda path: tf.data.TFRecordDataset(path, buffer_size=READ_BUFFER_BYTES)  # noqa: E731
    if shard_records:  # Record sharding needs one fixed order: read the files one by one.
        dataset = file_names.flat_map(read)
    else:
        dataset = file_names.interleave(
            read, cycle_length=min(INTERLEAVE_CYCLE_LENGTH, int(files.shape[0])), block_length=1,
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    if shard_records:
        dataset = dataset.shard(num_pipelines, pipeline_id)
    return dataset


# ---------------------------------------------------------------------------------------------
# Writing shards (tests, benchmarks, small custom datasets).

def make_example(encoded_image, label):
    """A serialised tf.Example of this layout; `label` is 1-based (1..1000)."""
    return tf.train.Example(features=tf.train.Features(feature={
        IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded_image])),
        LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
    })).SerializeToString()


def write_shards(data_dir, split, serialized_examples, num_shards):
    """Writes records round-robin into `<split>-0000i-of-0000n` files; returns their paths.

    Each file is written under a temporary name and renamed when complete, so that a
    reader never globs a half-written shard.
    """
    serialized_examples = list(serialized_examples)
    if split not in SPLIT_PATTERNS or num_shards < 1:
        raise ValueError(f"write_shards: `split` must be one of {sorted(SPLIT_PATTERNS)} and "
                         f"`num_shards` positive, got {split!r} and {num_shards!r}.")
    tf.io.gfile.makedirs(data_dir)
    paths = []
    for shard in range(num_shards):
        path = os.path.join(data_dir, f"{split}-{shard:05d}-of-{num_shards:05d}")
        temporary = os.path.join(data_dir, f".tmp.{split}-{shard:05d}-of-{num_shards:05d}")
        with tf.io.TFRecordWriter(temporary) as writer:
            for record in serialized_examples[shard::num_shards]:
                writer.write(record)
        tf.io.gfile.rename(temporary, path, overwrite=True)
        paths.append(path)
    return paths


# ---------------------------------------------------------------------------------------------
# Locating corrupt input.

@dataclasses.dataclass(frozen=True)
class CorruptRecord:
    """A bad spot in a TFRecord file: `index` counts records from 0 in `path`."""

    path: str
    index: int
    problem: str

    def __str__(self):
        return f"{self.path}, record {self.index}: {self.problem}"


@dataclasses.dataclass(frozen=True)
class ScanResult:
    """What `find_corrupt_records` found (`corrupt`: None when nothing) and how far it got."""

    corrupt: object
    files_scanned: int
    files_total: int


def _check_record(serialized):
    encoded, label = parse_example(serialized)
    return tf.shape(tf.io.decode_image(encoded, channels=3, expand_animations=False)), label


def find_corrupt_records(data_dir, splits=("train", "validation"), max_seconds=None):
    """Scans the shards of `splits` for the first unreadable file or record.

    Each file is first read fast (in parallel); only a file that fails is re-read record
    by record to say which record fails and why: a truncated or corrupt TFRecord file,
    a record that is not a tf.Example with the two features, an image that does not
    decode, or a label outside 1..1000. Stops after the first problem, or once
    `max_seconds` have passed (between files).
    """
    files = [path for split in splits for path in list_files(data_dir, split)]
    start = time.monotonic()
    for scanned, path in enumerate(files):
        if max_seconds is not None and time.monotonic() - start > max_seconds:
            return ScanResult(None, scanned, len(files))
        corrupt = scan_file(path)
        if corrupt is not None:
            return ScanResult(corrupt, scanned + 1, len(files))
    return ScanResult(None, len(files), len(files))


def scan_file(path):
    """The first `CorruptRecord` of one TFRecord file, or None when it reads cleanly."""
    fast = tf.data.TFRecordDataset(path).map(
        _check_record, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    try:
        for _ in fast:
            pass
        return None
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError, tf.errors.OutOfRangeError):
        pass
    index = 0
    iterator = iter(tf.data.TFRecordDataset(path))
    while True:
        try:
            serialized = next(iterator)
        except StopIteration:
            return None
        except tf.errors.OpError as error:
            return CorruptRecord(path, index, "the TFRecord file is truncated or corrupt here "
                                 f"(TensorFlow: {first_line(error)})")
        problem = _record_problem(serialized)
        if problem is not None:
            return CorruptRecord(path, index, problem)
        index += 1


def _record_problem(serialized):
    try:
        features = tf.io.parse_single_example(serialized, FEATURES)
    except tf.errors.InvalidArgumentError as error:
        return (f"not a tf.Example with {IMAGE_KEY} (bytes) and {LABEL_KEY} (int64) "
                f"(TensorFlow: {first_line(error)})")
    label = int(features[LABEL_KEY])
    if not FIRST_LABEL <= label < FIRST_LABEL + NUM_CLASSES:
        return (f"{LABEL_KEY} is {label}, outside {FIRST_LABEL}..{FIRST_LABEL + NUM_CLASSES - 1} "
                "(these shards may use 0-based labels)")
    try:
        tf.io.decode_image(features[IMAGE_KEY], channels=3, expand_animations=False)
    except tf.errors.InvalidArgumentError as error:
        return (f"{IMAGE_KEY} is not a decodable image ({len(features[IMAGE_KEY].numpy())} "
                f"bytes; TensorFlow: {first_line(error)})")
    return None


def first_line(error):
    """TensorFlow's own words from an OpError, without the function and node decorations."""
    message = getattr(error, "message", None) or str(error)
    for line in message.splitlines():
        line = line.strip()
        if line.startswith("{{function_node"):
            line = line.split("}}", 1)[-1].strip()
        if "Iterator::" in line:  # "Error in user-defined function ... Iterator::Root::Map: <what>"
            line = line[line.find("Iterator::"):].split(": ", 1)[-1]
        line = line.split(" [Op:")[0].strip()
        if line and not line.startswith("[["):
            return line
    return message.strip()
