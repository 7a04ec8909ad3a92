"""The labelled examples the analyses look at, as pixels in [0, 255] with a held-out part.

"digits" (the default) is the embedded digits set (`irevnet_tf.data.digits`), split with
`split_digits()` (stratified, 20 % held out, seed 0: the split the quickstart trains on), and
brought to the model's input the way the data module does it: values [0, 16] scaled to
[0, 255], one grey channel, 8x8 up-sampled to the model's image size by bilinear resizing.
A model that takes 3 channels gets the grey channel repeated.

Any other name goes through `irevnet_tf.data.build_dataset` (imported only then), whose
datasets yield `(pixels, labels)`, as the models take them.

Linear and nearest-neighbour classifiers are fitted on the training part and evaluated on the
held-out part; reconstructions and interpolations use the held-out part.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from irevnet_tf.data import digits as digits_lib
from irevnet_tf import validation

DIGITS = "digits"


@dataclasses.dataclass
class AnalysisExamples:
    """Pixels (N, H, W, C) float32 in [0, 255] and int64 labels (N,) of both parts."""

    dataset: str
    train_pixels: np.ndarray
    train_labels: np.ndarray
    holdout_pixels: np.ndarray
    holdout_labels: np.ndarray


def digits_to_pixels(images, image_size, channels=1):
    """8x8 digits with values in [0, 16] -> float32 pixels (N, image_size, image_size,
    channels) in [0, 255], up-sampled by bilinear resizing."""
    scaled = np.asarray(images, np.float32)[..., None] * (255.0 / digits_lib.MAX_VALUE)
    resized = tf.image.resize(scaled, (image_size, image_size), method="bilinear").numpy()
    return _match_channels(resized, channels, DIGITS)


def load_examples(dataset, image_shape, num_examples=None, data_dir=None,
                  train_split="train", holdout_split="validation", seed=0):
    """The training and held-out examples of `dataset` for a model taking `image_shape`.

    Args:
        dataset: "digits" or a name `irevnet_tf.data.build_dataset` knows.
        image_shape: `(height, width, channels)` of the model's images (square).
        num_examples: at most this many examples from each part (for digits a seeded
            subset balanced over the classes; the first ones of each split otherwise);
            None: all of digits, and is required for other datasets.
        data_dir: the data directory for `build_dataset`.
        train_split, holdout_split: split names for `build_dataset`.
        seed: the digits subset's seed.
    """
    height, width, channels = image_shape
    if height != width:
        raise ValueError(f"dataset {dataset!r}: the analyses' data pipelines make square "
                         f"images, but the model takes {height}x{width}.")
    validation.check_int(num_examples, "num_examples", 1, hint=" (examples per part)",
                         optional=True)
    if dataset == DIGITS:
        (train_images, train_labels), (holdout_images, holdout_labels) = (
            digits_lib.split_digits())
        rng = np.random.default_rng(seed)
        train_images, train_labels = _subset(train_images, train_labels, num_examples, rng)
        holdout_images, holdout_labels = _subset(holdout_images, holdout_labels,
                                                 num_examples, rng)
        return AnalysisExamples(
            DIGITS, digits_to_pixels(train_images, height, channels),
            train_labels.astype(np.int64), digits_to_pixels(holdout_images, height, channels),
            holdout_labels.astype(np.int64))
    if num_examples is None:
        raise ValueError(f"dataset {dataset!r}: num_examples is required for datasets other "
                         "than digits.")
    train = _take_from_dataset(dataset, train_split, num_examples, height, channels,
                               data_dir)
    holdout = _take_from_dataset(dataset, holdout_split, num_examples, height, channels,
                                 data_dir)
    return AnalysisExamples(dataset, *train, *holdout)


def check_examples_per_class(examples, minimum=2):
    """Raises ValueError unless every class has at least `minimum` examples in both parts."""
    classes = np.union1d(examples.train_labels, examples.holdout_labels)
    problems = []
    for part, labels in (("train", examples.train_labels),
                         ("held-out", examples.holdout_labels)):
        counts = {int(label): int(np.sum(labels == label)) for label in classes}
        short = {label: count for label, count in counts.items() if count < minimum}
        if short:
            problems.append(f"{part} part: class -> count {short}")
    if problems:
        raise ValueError(
            f"dataset {examples.dataset!r}: every class needs at least {minimum} examples in "
            f"the train and held-out parts to fit and test the classifiers; too few in the "
            f"{'; '.join(problems)}. Raise num_examples or choose another dataset.")


def _subset(images, labels, num_examples, rng):
    """`num_examples` examples balanced over the classes: each class shuffled (seeded), then
    taken round-robin, so that even small subsets hold every class about equally often."""
    if num_examples is None or num_examples >= len(labels):
        return images, labels
    queues = [list(rng.permutation(np.flatnonzero(labels == label)))
              for label in np.unique(labels)]
    chosen = []
    while len(chosen) < num_examples:
        for queue in queues:
            if queue and len(chosen) < num_examples:
                chosen.append(queue.pop(0))
    chosen = np.sort(np.asarray(chosen))
    return images[chosen], labels[chosen]


def _match_channels(pixels, channels, dataset):
    have = pixels.shape[-1]
    if have == channels:
        return pixels.astype(np.float32)
    if have == 1:
        return np.repeat(pixels, channels, axis=-1).astype(np.float32)
    raise ValueError(f"dataset {dataset!r} has {have}-channel images but the model takes "
                     f"{channels} channels.")


def _take_from_dataset(dataset, split, num_examples, image_size, channels, data_dir):
    from irevnet_tf import data as data_lib  # Deferred: written separately, needed rarely.

    batch_size = min(num_examples, 64)
    pipeline = data_lib.build_dataset(dataset, split, global_batch_size=batch_size,
                                      image_size=image_size, is_training=False,
                                      data_dir=data_dir)
    images, labels, count = [], [], 0
    for batch_images, batch_labels in pipeline:
        images.append(np.asarray(batch_images, np.float32))
        labels.append(np.asarray(batch_labels).reshape(-1))
        count += len(labels[-1])
        if count >= num_examples:
            break
    if not images:
        raise ValueError(f"dataset {dataset!r} split {split!r} gave no examples "
                         f"(batches of {batch_size}).")
    pixels = np.concatenate(images)[:num_examples]
    return (_match_channels(pixels, channels, dataset),
            np.concatenate(labels)[:num_examples].astype(np.int64))
