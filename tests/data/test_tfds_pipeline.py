"""tensorflow-datasets sources under tfds.testing.mock_data (offline): imagenet2012, cifar10."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from irevnet_tf import data

# mock_data's default policy (AUTO) finds the metadata tensorflow-datasets ships for these
# datasets and generates random examples: ImageNet JPEGs of random small sizes (e.g. 47x17),
# CIFAR PNGs of 32x32.
MOCK_DIR = "/nonexistent/tensorflow_datasets"


def test_imagenet2012_info():
    with tfds.testing.mock_data(num_examples=4):
        info = data.dataset_info("imagenet2012", MOCK_DIR)
    assert (info.num_classes, info.channels, info.default_image_size) == (1000, 3, 224)
    assert (info.train_split, info.eval_split, info.preprocessing) == (
        "train", "validation", "imagenet")
    assert info.mean == (123.675, 116.28, 103.53) and info.std == (58.395, 57.12, 57.375)
    # The model directory's defaults describe the same inputs.
    from irevnet_tf import model_files as model_dir
    assert (info.mean, info.std) == (model_dir.IMAGENET_MEAN, model_dir.IMAGENET_STD)


@pytest.mark.parametrize("is_training", [True, False])
def test_imagenet2012_batches(is_training):
    with tfds.testing.mock_data(num_examples=12):
        dataset = data.build_dataset("imagenet2012", None, global_batch_size=4, image_size=32,
                                     is_training=is_training, data_dir=MOCK_DIR, seed=0,
                                     repeat=False)
        assert dataset.element_spec[0].shape.as_list() == [4, 32, 32, 3]
        batches = list(dataset)
    assert len(batches) == 3
    for images, labels in batches:
        assert np.isfinite(images.numpy()).all() and labels.dtype == tf.int32
        assert ((labels.numpy() >= 0) & (labels.numpy() < 1000)).all()


def test_imagenet2012_deterministic_training_repeats_exactly():
    kwargs = dict(global_batch_size=3, image_size=16, is_training=True, data_dir=MOCK_DIR,
                  deterministic=True, seed=2)
    with tfds.testing.mock_data(num_examples=7):
        runs = [[batch[0].numpy() for batch in data.build_dataset(
            "imagenet2012", "train", **kwargs).take(4)] for _ in range(2)]
    for first, second in zip(*runs):
        np.testing.assert_array_equal(first, second)


def test_cifar10_info_and_batches():
    with tfds.testing.mock_data(num_examples=10):
        info = data.dataset_info("cifar10", MOCK_DIR)
        train = data.build_dataset("cifar10", "train", global_batch_size=4, image_size=32,
                                   is_training=True, data_dir=MOCK_DIR, seed=0)
        evaluation = data.build_dataset("cifar10", "test", global_batch_size=5, image_size=32,
                                        is_training=False, data_dir=MOCK_DIR)
        train_batches = list(train.take(4))  # Repeats: 4 batches of 4 from 10 examples.
        eval_batches = list(evaluation)
    assert (info.num_classes, info.channels, info.default_image_size, info.preprocessing) == (
        10, 3, 32, "cifar")
    np.testing.assert_allclose(info.mean, np.array([0.4914, 0.4822, 0.4465]) * 255)
    np.testing.assert_allclose(info.std, np.array([0.2023, 0.1994, 0.2010]) * 255)
    assert len(train_batches) == 4 and len(eval_batches) == 2
    assert train_batches[0][0].shape == (4, 32, 32, 3)
    assert all(((labels.numpy() >= 0) & (labels.numpy() < 10)).all() for _, labels in eval_batches)


def test_cifar10_eval_is_the_image_as_pixels():
    with tfds.testing.mock_data(num_examples=2):
        raw = next(iter(tfds.load("cifar10", split="test", data_dir=MOCK_DIR)))
        images, labels = next(iter(data.build_dataset(
            "cifar10", "test", global_batch_size=1, image_size=32, is_training=False,
            data_dir=MOCK_DIR, deterministic=True)))
    expected = raw["image"].numpy().astype(np.float64)  # Pixels: the model normalises.
    np.testing.assert_allclose(images.numpy()[0], expected, atol=1e-4)
    assert int(labels[0]) == int(raw["label"])


def test_pipelines_read_disjoint_even_splits():
    requested = []

    def as_dataset(self, split, **kwargs):
        # Stands in for prepared files: examples 0..7 with labels 0..7, of which `split`
        # (a tfds.even_splits part) gets its contiguous share.
        requested.append(split)
        index, count = getattr(split, "index", 0), getattr(split, "count", 1)
        labels = np.arange(8)[index * 8 // count:(index + 1) * 8 // count]
        return tf.data.Dataset.from_tensor_slices({
            "image": np.stack([np.full((32, 32, 3), label, np.uint8) for label in labels]),
            "label": labels, "id": np.array([b"x"] * len(labels))})

    shards = []
    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        for pipeline in range(2):
            context = tf.distribute.InputContext(2, pipeline, 2)
            dataset = data.build_dataset("cifar10", "train", global_batch_size=2, image_size=32,
                                         is_training=True, data_dir=MOCK_DIR,
                                         input_context=context, repeat=False, seed=0)
            shards.append(sorted(int(v) for _, labels in dataset for v in labels.numpy()))
    assert [(split.index, split.count) for split in requested] == [(0, 2), (1, 2)]
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == list(range(8))


def test_not_prepared_dataset_says_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match="no prepared tensorflow-datasets files"):
        data.build_dataset("cifar10", "train", global_batch_size=2, image_size=32,
                           is_training=True, data_dir=str(tmp_path))


def test_unknown_name_lists_the_supported_ones():
    with pytest.raises(ValueError, match="imagenet_tfrecord.*synthetic.*digits"):
        data.dataset_info("no_such_dataset_xyz")
    with pytest.raises(ValueError, match="Unknown dataset"):
        data.build_dataset("no_such_dataset_xyz", "train", global_batch_size=2, image_size=8,
                           is_training=True)


def test_imagenet2012_needs_data_dir():
    with pytest.raises(ValueError, match="`data_dir` is required"):
        data.build_dataset("imagenet2012", "train", global_batch_size=2, image_size=32,
                           is_training=True)
