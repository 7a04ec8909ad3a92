"""What each supported dataset is: classes, channels, resolution, splits, sizes, normalisation.

`dataset_info(name, data_dir)` answers without reading images, except for a
tensorflow-datasets dataset whose normalisation is not in `KNOWN_CHANNEL_STATS`: its
mean/std are then estimated once from the first `STATS_SAMPLE_SIZE` training images.
"""

import dataclasses
import functools
from typing import Optional

import numpy as np
from absl import logging

from irevnet_tf.data import digits

IMAGENET_TFRECORD = "imagenet_tfrecord"
IMAGENET_TFDS = "imagenet2012"
SYNTHETIC = "synthetic"
SYNTHETIC_EVAL_EXAMPLES = 512
DIGITS = "digits"
# Names handled here rather than by tensorflow-datasets; any other name is looked up there.
BUILTIN_NAMES = (IMAGENET_TFDS, IMAGENET_TFRECORD, SYNTHETIC, DIGITS)
PREPROCESSING_KINDS = ("imagenet", "cifar", "digits", "synthetic")

# ImageNet's per-channel normalisation (pixel scale [0, 255]); the same values as
# irevnet_tf.model_files' defaults, kept here so that data depends on nothing
# downstream of it (data -> model -> training).
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
IMAGENET_NUM_CLASSES = 1000
IMAGENET_TRAIN_EXAMPLES = 1_281_167
IMAGENET_EVAL_EXAMPLES = 50_000
# tensorflow-datasets images at most this large (and all of one size) get the CIFAR
# preprocessing at their own resolution; larger or variable-size ones the ImageNet one at 224.
SMALL_IMAGE_MAX_SIDE = 64
STATS_SAMPLE_SIZE = 1000

# Per-channel mean/std (pixel scale [0, 255]). CIFAR's are the authors' i-RevNet release's
# (models/utils_cifar.py), so that its CIFAR weights see the inputs they were trained with.
KNOWN_CHANNEL_STATS = {
    "imagenet2012": (IMAGENET_MEAN, IMAGENET_STD),
    "cifar10": (tuple(255 * m for m in (0.4914, 0.4822, 0.4465)),
                tuple(255 * s for s in (0.2023, 0.1994, 0.2010))),
    "cifar100": (tuple(255 * m for m in (0.5071, 0.4867, 0.4408)),
                 tuple(255 * s for s in (0.2675, 0.2565, 0.2761))),
    "mnist": ((255 * 0.1307,), (255 * 0.3081,)),
    "fashion_mnist": ((255 * 0.2860,), (255 * 0.3530,)),
}
# Small-image datasets whose classes change under a left-right flip: no flip in training.
NOT_FLIP_INVARIANT = frozenset({"mnist", "emnist", "kmnist", "svhn_cropped", "fashion_mnist"})


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Facts about a dataset that the trainer, the model and the analysis tools need.

    Attributes:
        name: the dataset name given to `dataset_info` / `build_dataset`.
        num_classes: number of labels; labels are 0 .. num_classes - 1.
        channels: image channels (3 for RGB, 1 for grey-scale).
        default_image_size: the resolution to train at unless told otherwise; None: the
            model configuration's (synthetic data).
        train_split, eval_split: split names for training and evaluation.
        num_train_examples, num_eval_examples: examples in those splits; None when unknown.
        mean, std: per-channel normalisation, pixel scale [0, 255]: model input is
            `(pixels - mean) / std`.
        preprocessing: "imagenet", "cifar", "digits" or "synthetic" (see preprocessing.py).
    """

    name: str
    num_classes: int
    channels: int
    default_image_size: Optional[int]
    train_split: str
    eval_split: str
    num_train_examples: object
    num_eval_examples: object
    mean: tuple
    std: tuple
    preprocessing: str

    def __post_init__(self):
        if self.preprocessing not in PREPROCESSING_KINDS:
            raise ValueError(f"DatasetInfo {self.name!r}: preprocessing must be one of "
                             f"{PREPROCESSING_KINDS}, got {self.preprocessing!r}.")
        if not len(self.mean) == len(self.std) == self.channels:
            raise ValueError(f"DatasetInfo {self.name!r}: mean and std need one value per "
                             f"channel ({self.channels}), got {self.mean} and {self.std}.")


def supported_names_text():
    """One line for error messages: what `name` may be."""
    return (f"{', '.join(repr(n) for n in BUILTIN_NAMES)}, or the name of an image "
            "classification dataset in tensorflow-datasets (e.g. 'cifar10', 'cifar100', "
            "'mnist')")


def check_name(name):
    if not isinstance(name, str) or not name:
        raise ValueError(f"Dataset `name` must be a non-empty string: {supported_names_text()}; "
                         f"got {name!r}.")
    return name


def dataset_info(name, data_dir=None):
    """The `DatasetInfo` of a supported dataset.

    Args:
        name: "imagenet2012", "imagenet_tfrecord", "synthetic", "digits", or any image
            classification dataset of tensorflow-datasets (e.g. "cifar10").
        data_dir: where tensorflow-datasets keeps prepared data (for its datasets; None: its
            default). Not needed for the other names.
    Raises:
        ValueError: for an unknown name, naming the supported ones.
    """
    check_name(name)
    if name == IMAGENET_TFRECORD:
        return imagenet_info(IMAGENET_TFRECORD, "validation")
    if name == SYNTHETIC:
        # Synthetic data exist for speed tests: ImageNet's classes and channels, but no
        # image size of their own (the model configuration's is used) and an evaluation
        # split small enough that the end-of-run evaluation does not dwarf a short run.
        return dataclasses.replace(imagenet_info(SYNTHETIC, "validation"),
                                   default_image_size=None,
                                   num_eval_examples=SYNTHETIC_EVAL_EXAMPLES,
                                   preprocessing="synthetic")
    if name == DIGITS:
        return digits_info()
    return tfds_info(name, data_dir)


def imagenet_info(name, eval_split, num_train=IMAGENET_TRAIN_EXAMPLES,
                  num_eval=IMAGENET_EVAL_EXAMPLES):
    """ImageNet-2012 (ILSVRC): 1,000 classes, RGB, 224x224, 1,281,167 / 50,000 examples."""
    return DatasetInfo(
        name=name, num_classes=IMAGENET_NUM_CLASSES, channels=3, default_image_size=224,
        train_split="train", eval_split=eval_split, num_train_examples=num_train,
        num_eval_examples=num_eval, mean=IMAGENET_MEAN, std=IMAGENET_STD,
        preprocessing="imagenet")


@functools.lru_cache(maxsize=None)
def digits_info():
    """The embedded digits: 10 classes, grey, shown at 32x32; stats of the training part."""
    (train_images, _), (holdout_images, _) = digits.split_digits()
    pixels = train_images.astype(np.float64) * (255.0 / digits.MAX_VALUE)
    return DatasetInfo(
        name=DIGITS, num_classes=digits.NUM_CLASSES, channels=1, default_image_size=32,
        train_split="train", eval_split="test", num_train_examples=len(train_images),
        num_eval_examples=len(holdout_images), mean=(float(pixels.mean()),),
        std=(float(pixels.std()),), preprocessing="digits")


# ---------------------------------------------------------------------------------------------
# tensorflow-datasets.

def tfds_builder(name, data_dir):
    """`tfds.builder(name, data_dir=...)`, with an unknown name turned into a clear error."""
    import tensorflow_datasets as tfds  # Deferred: slow to import, only needed here.

    # A name tensorflow-datasets does not register is refused before `tfds.builder`, which
    # would first log (INFO) that it found no files for it, a line before our error.
    # Names with ":" (a version, or a community namespace) are left to tfds.
    base_name = name.split("/")[0]
    if ":" not in name and base_name not in tfds.list_builders(with_community_datasets=False):
        raise ValueError(f"Unknown dataset {name!r}: supported are {supported_names_text()}.")
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise ValueError(f"Unknown dataset {name!r}: supported are {supported_names_text()}."
                         ) from None


def tfds_not_prepared_error(builder, name, data_dir, error):
    """The error for a tensorflow-datasets dataset that has no prepared files where looked."""
    return FileNotFoundError(
        f"Dataset {name!r}: no prepared tensorflow-datasets files in data_dir={data_dir!r} "
        f"(looked for {builder.data_dir}/{builder.info.name}-<split>.tfrecord-*). Prepare it "
        f"first, e.g. `tfds build {name} --data_dir <dir>` (ImageNet needs its manual download "
        f"in <dir>/downloads/manual); this library never downloads. ({error})")


def tfds_feature_keys(builder):
    """`(image_key, label_key)` of an image classification dataset, else a ValueError."""
    import tensorflow_datasets as tfds

    features = builder.info.features
    keys = builder.info.supervised_keys
    if not (isinstance(keys, tuple) and len(keys) == 2 and all(isinstance(k, str) for k in keys)):
        keys = (next((k for k, f in features.items() if isinstance(f, tfds.features.Image)), None),
                next((k for k, f in features.items()
                      if isinstance(f, tfds.features.ClassLabel)), None))
    image_key, label_key = keys
    if (image_key is None or label_key is None
            or not isinstance(features[image_key], tfds.features.Image)
            or not isinstance(features[label_key], tfds.features.ClassLabel)):
        raise ValueError(f"Dataset {builder.info.name!r} of tensorflow-datasets is not an image "
                         "classification dataset (an Image feature and a ClassLabel feature); "
                         f"supported are {supported_names_text()}.")
    return image_key, label_key


def tfds_info(name, data_dir):
    builder = tfds_builder(name, data_dir)
    image_key, label_key = tfds_feature_keys(builder)
    features = builder.info.features
    height, width, channels = features[image_key].shape
    if channels is None:
        channels = 3
    splits = builder.info.splits
    if name == IMAGENET_TFDS or ("validation" in splits and "test" not in splits):
        eval_split = "validation"  # imagenet2012's "test" split has no labels.
    else:
        eval_split = "test"
    small = height is not None and width is not None and max(height, width) <= SMALL_IMAGE_MAX_SIDE

    def count(split):
        return splits[split].num_examples if split in splits else None

    num_train, num_eval = count("train"), count(eval_split)
    if name == IMAGENET_TFDS:
        num_train = num_train or IMAGENET_TRAIN_EXAMPLES
        num_eval = num_eval or IMAGENET_EVAL_EXAMPLES
    base_name = name.split(":")[0].split("/")[0]
    if base_name in KNOWN_CHANNEL_STATS:
        mean, std = KNOWN_CHANNEL_STATS[base_name]
    else:
        mean, std = estimate_channel_stats(name, data_dir, image_key, channels)
    return DatasetInfo(
        name=name, num_classes=features[label_key].num_classes, channels=channels,
        default_image_size=max(height, width) if small else 224, train_split="train",
        eval_split=eval_split, num_train_examples=num_train, num_eval_examples=num_eval,
        mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std),
        preprocessing="cifar" if small else "imagenet")


@functools.lru_cache(maxsize=None)
def estimate_channel_stats(name, data_dir, image_key, channels):
    """Per-channel mean/std of the first `STATS_SAMPLE_SIZE` training images (pixel scale)."""
    import tensorflow as tf

    builder = tfds_builder(name, data_dir)
    try:
        images = builder.as_dataset(split="train", shuffle_files=False)
    except AssertionError as error:
        raise tfds_not_prepared_error(builder, name, data_dir, error) from None
    logging.info("dataset_info(%r): estimating mean/std from %d training images.", name,
                 STATS_SAMPLE_SIZE)
    total = np.zeros(channels)
    total_squares = np.zeros(channels)
    count = 0
    for example in images.take(STATS_SAMPLE_SIZE).map(
            lambda ex: tf.reshape(tf.cast(ex[image_key], tf.float64), [-1, channels]),
            num_parallel_calls=tf.data.AUTOTUNE).as_numpy_iterator():
        total += example.sum(0)
        total_squares += (example ** 2).sum(0)
        count += len(example)
    if count == 0:
        raise ValueError(f"dataset_info({name!r}): the train split holds no images to estimate "
                         "the normalisation from.")
    mean = total / count
    return tuple(mean), tuple(np.sqrt(np.maximum(total_squares / count - mean ** 2, 1e-12)))
