"""Synthetic data, the embedded digits, dataset_info and the argument checks of build_dataset."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from irevnet_tf import data
from irevnet_tf.data import digits


def test_synthetic_info_and_batches():
    info = data.dataset_info("synthetic")
    assert (info.num_classes, info.channels, info.default_image_size, info.preprocessing) == (
        1000, 3, None, "synthetic")
    dataset = data.build_dataset("synthetic", "train", global_batch_size=6, image_size=16,
                                 is_training=True, seed=3)
    assert dataset.element_spec[0].shape.as_list() == [6, 16, 16, 3]
    assert dataset.element_spec[1].dtype == tf.int32
    (first_images, first_labels), (second_images, _) = list(dataset.take(2))
    # One batch, repeated.
    np.testing.assert_array_equal(first_images.numpy(), second_images.numpy())
    # Pixels in [0, 255] that the model's normalisation (the info's mean/std) makes about
    # N(0, 1) (clipping at 0 and 255 takes a little off the tails).
    images = first_images.numpy()
    assert images.min() >= 0.0 and images.max() <= 255.0
    normalised = (images - np.array(info.mean)) / np.array(info.std)
    assert abs(float(normalised.mean())) < 0.1
    assert abs(float(normalised.std()) - 1.0) < 0.1
    assert ((first_labels.numpy() >= 0) & (first_labels.numpy() < 1000)).all()
    # Needs no data_dir; without repeat, one epoch of the (small, for speed tests) split.
    evaluation = data.build_dataset("synthetic", "validation", global_batch_size=128,
                                    image_size=2, is_training=False)
    assert sum(1 for _ in evaluation) == 512 // 128


def test_synthetic_replicas_get_different_batches():
    batches = [next(iter(data.build_dataset(
        "synthetic", "train", global_batch_size=4, image_size=8, is_training=True, seed=1,
        input_context=tf.distribute.InputContext(2, pipeline, 2))))[0].numpy()
        for pipeline in range(2)]
    assert batches[0].shape == (2, 8, 8, 3)
    assert not np.array_equal(batches[0], batches[1])


def test_digits_info_counts_and_statistics():
    info = data.dataset_info("digits")
    (train_images, train_labels), (holdout_images, holdout_labels) = digits.split_digits()
    assert (info.num_classes, info.channels, info.default_image_size) == (10, 1, 32)
    assert info.num_train_examples == len(train_images)
    assert info.num_eval_examples == len(holdout_images)
    assert info.num_train_examples + info.num_eval_examples == 1797
    pixels = train_images.astype(np.float64) * 255.0 / 16.0
    np.testing.assert_allclose(info.mean, [pixels.mean()], rtol=1e-12)
    np.testing.assert_allclose(info.std, [pixels.std()], rtol=1e-12)


def test_digits_split_is_disjoint_and_stratified():
    images, labels = digits.load_digits()
    (train_images, train_labels), (holdout_images, holdout_labels) = digits.split_digits()
    train_rows = {image.tobytes() + bytes([label])
                  for image, label in zip(train_images, train_labels)}
    holdout_rows = {image.tobytes() + bytes([label])
                    for image, label in zip(holdout_images, holdout_labels)}
    assert not train_rows & holdout_rows
    assert len(train_labels) + len(holdout_labels) == len(labels) == 1797
    for label in range(10):  # Each class is held out in the same proportion, 20 %.
        held_out = np.sum(holdout_labels == label) / np.sum(labels == label)
        assert abs(held_out - 0.2) < 0.01


def test_digits_eval_batches_are_the_upsampled_digits_as_pixels():
    _, (holdout_images, holdout_labels) = digits.split_digits()
    dataset = data.build_dataset("digits", "test", global_batch_size=32, image_size=8,
                                 is_training=False, deterministic=True)
    images, labels = next(iter(dataset))
    assert images.shape == (32, 8, 8, 1) and labels.dtype == tf.int32
    expected = holdout_images[:32, ..., None] * 255.0 / 16.0  # Pixels: the model normalises.
    np.testing.assert_allclose(images.numpy(), expected, atol=1e-5)  # At 8x8 no resampling.
    np.testing.assert_array_equal(labels.numpy(), holdout_labels[:32])
    # Every held-out digit, except the incomplete final batch.
    assert sum(int(batch[1].shape[0]) for batch in dataset) == len(holdout_images) // 32 * 32


def test_digits_training_batches_range_and_shapes():
    dataset = data.build_dataset("digits", "train", global_batch_size=64, image_size=32,
                                 is_training=True, seed=0)
    assert dataset.element_spec[0].shape.as_list() == [64, 32, 32, 1]
    images = np.concatenate([batch[0].numpy() for batch in dataset.take(3)])
    pixels = images  # Pixels: the model normalises them.
    assert pixels.min() >= -1e-3 and pixels.max() <= 255 + 1e-3
    assert pixels.max() > 200  # Scaled from [0, 16], not left there.


def test_digits_deterministic_repeats_exactly():
    kwargs = dict(global_batch_size=100, image_size=16, is_training=True, deterministic=True,
                  seed=4)
    first = [batch[0].numpy() for batch in data.build_dataset("digits", "train", **kwargs).take(3)]
    second = [batch[0].numpy() for batch in data.build_dataset("digits", "train", **kwargs).take(3)]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_digits_pipelines_are_disjoint():
    shards = []
    for pipeline in range(2):
        dataset = data.build_dataset("digits", "test", global_batch_size=2, image_size=8,
                                     is_training=False, deterministic=True,
                                     input_context=tf.distribute.InputContext(2, pipeline, 2))
        shards.append({batch[0].numpy().tobytes() for batch in dataset})
    assert not shards[0] & shards[1]


def test_dataset_info_is_frozen():
    info = data.dataset_info("digits")
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.num_classes = 3


@pytest.mark.parametrize("argument,value,match", [
    ("image_size", 0, "`image_size` must be a positive int"),
    ("image_size", 31.5, "`image_size` must be a positive int"),
    ("global_batch_size", -2, "`global_batch_size` must be a positive int"),
    ("is_training", "yes", "`is_training` must be True or False"),
    ("seed", 1.5, "`seed` must be an int"),
])
def test_bad_arguments(argument, value, match):
    kwargs = dict(global_batch_size=4, image_size=8, is_training=True)
    kwargs[argument] = value
    with pytest.raises(ValueError, match=match):
        data.build_dataset("digits", "train", **kwargs)


def test_batch_not_divisible_by_replicas():
    context = tf.distribute.InputContext(1, 0, 4)
    with pytest.raises(ValueError, match=r"`global_batch_size` \(6\) must be divisible .* \(4"):
        data.build_dataset("digits", "train", global_batch_size=6, image_size=8,
                           is_training=True, input_context=context)


def test_batch_larger_than_the_data_without_repeat():
    with pytest.raises(ValueError, match="larger than the"):
        data.build_dataset("digits", "test", global_batch_size=1000, image_size=8,
                           is_training=False)


def test_unknown_digits_split():
    with pytest.raises(ValueError, match="`split` must be one of"):
        data.build_dataset("digits", "holdout", global_batch_size=4, image_size=8,
                           is_training=False)
