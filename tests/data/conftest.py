"""Shared fixtures: small ImageNet-layout TFRecord shards with real JPEG (and PNG) images."""

import numpy as np
import pytest
import tensorflow as tf

from irevnet_tf.data import tfrecord

# 20 training records in 4 shards, 6 validation records in 2 shards. Every record has its
# own label, so that a record can be recognised by its label.
NUM_TRAIN = 20
NUM_VALIDATION = 6
TRAIN_LABELS = list(range(1, NUM_TRAIN + 1))  # 1-based, as the conversion scripts write them.
VALIDATION_LABELS = list(range(101, 101 + NUM_VALIDATION))


def random_image(rng, height, width, channels=3):
    return rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)


def encoded_images(rng, count):
    """Mostly RGB JPEGs of assorted sizes; one grey-scale JPEG, one tiny JPEG, one PNG."""
    images = []
    for index in range(count):
        if index == 1:
            images.append(tf.io.encode_jpeg(random_image(rng, 30, 41, 1)).numpy())
        elif index == 2:
            images.append(tf.io.encode_jpeg(random_image(rng, 9, 13)).numpy())
        elif index == 3:
            images.append(tf.io.encode_png(random_image(rng, 37, 29)).numpy())
        else:
            height, width = rng.integers(24, 64, size=2)
            images.append(tf.io.encode_jpeg(random_image(rng, height, width)).numpy())
    return images


def write_imagenet_shards(directory, seed=0):
    rng = np.random.default_rng(seed)
    train = [tfrecord.make_example(image, label)
             for image, label in zip(encoded_images(rng, NUM_TRAIN), TRAIN_LABELS)]
    validation = [tfrecord.make_example(image, label) for image, label in
                  zip(encoded_images(rng, NUM_VALIDATION), VALIDATION_LABELS)]
    tfrecord.write_shards(str(directory), "train", train, num_shards=4)
    tfrecord.write_shards(str(directory), "validation", validation, num_shards=2)
    return str(directory)


@pytest.fixture(scope="session")
def imagenet_shards(tmp_path_factory):
    """A data_dir with train-0000i-of-00004 and validation-0000i-of-00002 shards."""
    return write_imagenet_shards(tmp_path_factory.mktemp("imagenet_tfrecord"))
