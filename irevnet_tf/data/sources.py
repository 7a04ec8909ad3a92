"""Where examples come from: one `Source` per kind of data (TFRecord shards, tensorflow-datasets,
the embedded digits), each already restricted to one input pipeline's share.

A Source yields raw elements (serialised records, encoded or decoded images with labels)
for one epoch; `pipeline.build_dataset` shuffles, repeats, preprocesses and batches them
the same way for every source.
"""

import dataclasses
from typing import Callable, Optional

import tensorflow as tf

from irevnet_tf.data import digits
from irevnet_tf.data import info as info_lib
from irevnet_tf.data import preprocessing
from irevnet_tf.data import tfrecord

# Element shuffle buffers (elements, per input pipeline). ImageNet's hold encoded JPEGs
# (about 110 kB each: about 1.1 GB); small datasets are shuffled whole.
LARGE_IMAGE_SHUFFLE_BUFFER = 10_000
SMALL_IMAGE_SHUFFLE_BUFFER = 50_000


@dataclasses.dataclass(frozen=True)
class Source:
    """One input pipeline's share of a dataset split.

    Attributes:
        epoch: `epoch(shuffle, seed)` -> one epoch of raw elements; `shuffle` asks for a
            shuffled file order where there are files: fixed by `seed` (a `[2]` stateless
            seed tensor), or new in every iteration when `seed` is None.
        parse: raw element -> `(image, int32 label)`, the image encoded (string) or decoded.
        train_fn: `(image, seed) -> float32 pixels [S, S, C]`, random augmentation with
            `seed`.
        eval_fn: `image -> float32 pixels [S, S, C]`.
        shuffle_buffer: elements held by the training shuffle buffer.
        num_examples: examples in this share, None when unknown.
    """

    epoch: Callable
    parse: Callable
    train_fn: Callable
    eval_fn: Callable
    shuffle_buffer: int
    num_examples: Optional[int] = None


def _family_fns(info, image_size):
    """The train/eval preprocessing of `info.preprocessing` at `image_size` (pixels; the
    model normalises them)."""
    channels = int(info.channels)
    if info.preprocessing == "imagenet":
        return (lambda image, seed: preprocessing.imagenet_train(image, seed, image_size,
                                                                  channels),
                lambda image: preprocessing.imagenet_eval(image, image_size, channels))
    if info.preprocessing == "cifar":
        flip = info.name.split(":")[0] not in info_lib.NOT_FLIP_INVARIANT
        return (lambda image, seed: preprocessing.cifar_train(image, seed, image_size,
                                                               flip=flip),
                lambda image: preprocessing.cifar_eval(image, image_size))
    if info.preprocessing == "digits":
        return (lambda image, seed: preprocessing.digits_train(image, seed, image_size),
                lambda image: preprocessing.digits_eval(image, image_size))
    raise ValueError(f"No preprocessing for {info.preprocessing!r}.")


def tfrecord_source(info, split, data_dir, image_size, *, deterministic, pipeline_id,
                    num_pipelines):
    """ImageNet TFRecord shards: this pipeline's files (see tfrecord.py)."""
    files = tfrecord.list_files(data_dir, split)
    files, shard_records = tfrecord.shard_files(files, pipeline_id, num_pipelines)

    def epoch(shuffle, seed):
        return tfrecord.records(
            files, shuffle=shuffle, seed=seed, deterministic=deterministic,
            pipeline_id=pipeline_id if shard_records else 0,
            num_pipelines=num_pipelines if shard_records else 1)

    train_fn, eval_fn = _family_fns(info, image_size)
    return Source(epoch=epoch, parse=tfrecord.parse_example, train_fn=train_fn, eval_fn=eval_fn,
                  shuffle_buffer=LARGE_IMAGE_SHUFFLE_BUFFER)


def tfds_source(info, split, data_dir, image_size, *, is_training, deterministic, pipeline_id,
                num_pipelines):
    """A tensorflow-datasets dataset; pipelines read disjoint `tfds.even_splits` of `split`."""
    import tensorflow_datasets as tfds

    builder = info_lib.tfds_builder(info.name, data_dir)
    image_key, label_key = info_lib.tfds_feature_keys(builder)
    read_split = tfds.even_splits(split, n=num_pipelines)[pipeline_id] if num_pipelines > 1 \
        else split
    encoded = info.preprocessing == "imagenet"  # Decoded in preprocessing, inside the crop.
    read_config = tfds.ReadConfig(skip_prefetch=True, try_autocache=not encoded,
                                  interleave_cycle_length=tfrecord.INTERLEAVE_CYCLE_LENGTH)
    try:
        examples = builder.as_dataset(
            split=read_split, shuffle_files=is_training and not deterministic,
            decoders={image_key: tfds.decode.SkipDecoding()} if encoded else None,
            read_config=read_config)
    except AssertionError as error:  # tfds' way of saying "not prepared".
        raise info_lib.tfds_not_prepared_error(builder, info.name, data_dir, error) from None
    except (KeyError, ValueError) as error:
        known = sorted(builder.info.splits) or "unknown until prepared"
        raise ValueError(f"Dataset {info.name!r}: cannot read split {split!r} (splits: "
                         f"{known}): {error}") from None
    elements = examples.map(lambda example: (example[image_key], example[label_key]))
    num_classes = info.num_classes

    def parse(element):
        image, label = element
        in_range = tf.logical_and(label >= 0, label < num_classes)
        check = tf.debugging.Assert(in_range, [
            f"{info.name}: {tfrecord.LABEL_ERROR_MARKER}: labels must be in "
            f"0..{num_classes - 1} (is this an unlabelled split?); got", label])
        with tf.control_dependencies([check]):
            return image, tf.cast(label, tf.int32)

    try:
        num_examples = builder.info.splits[read_split].num_examples or None
    except (KeyError, ValueError, TypeError, AttributeError):
        num_examples = None
    buffer = LARGE_IMAGE_SHUFFLE_BUFFER if encoded else SMALL_IMAGE_SHUFFLE_BUFFER
    train_fn, eval_fn = _family_fns(info, image_size)
    return Source(epoch=lambda shuffle, seed: elements, parse=parse, train_fn=train_fn,
                  eval_fn=eval_fn, shuffle_buffer=min(buffer, num_examples or buffer),
                  num_examples=num_examples)


DIGITS_SPLITS = ("train", "test", "validation")


def digits_source(info, split, image_size, *, pipeline_id, num_pipelines):
    """The embedded digits: "train" is split_digits' training part, "test"/"validation"
    its held-out part; pipelines take every `num_pipelines`-th digit."""
    if split not in DIGITS_SPLITS:
        raise ValueError(f"digits: `split` must be one of {DIGITS_SPLITS}, got {split!r}.")
    train, holdout = digits.split_digits()
    images, labels = train if split == "train" else holdout
    images = images[pipeline_id::num_pipelines]
    labels = labels[pipeline_id::num_pipelines].astype("int32")
    elements = tf.data.Dataset.from_tensor_slices((images, labels))
    train_fn, eval_fn = _family_fns(info, image_size)
    return Source(epoch=lambda shuffle, seed: elements, parse=lambda element: element,
                  train_fn=train_fn, eval_fn=eval_fn, shuffle_buffer=len(images),
                  num_examples=len(images))
