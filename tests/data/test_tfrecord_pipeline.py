"""imagenet_tfrecord: shapes, 1-based labels, sharding, determinism, argument errors."""

import numpy as np
import pytest
import tensorflow as tf

from irevnet_tf import data
from tests.data import conftest

NAME = "imagenet_tfrecord"


def labels_of(dataset):
    return sorted(int(label) for _, labels in dataset for label in labels.numpy())


def test_eval_batches_have_static_shapes_and_zero_based_labels(imagenet_shards):
    dataset = data.build_dataset(NAME, "validation", global_batch_size=4, image_size=32,
                                 is_training=False, data_dir=imagenet_shards)
    assert dataset.element_spec[0].shape.as_list() == [4, 32, 32, 3]
    assert dataset.element_spec[1].shape.as_list() == [4]
    assert dataset.element_spec[0].dtype == tf.float32
    assert dataset.element_spec[1].dtype == tf.int32
    batches = list(dataset)
    assert len(batches) == 1  # 6 records, batch 4: the incomplete batch is dropped.
    labels = labels_of(dataset)
    assert set(labels) <= {label - 1 for label in conftest.VALIDATION_LABELS}
    assert len(labels) == 4


def test_training_repeats_and_reads_every_record(imagenet_shards):
    dataset = data.build_dataset(NAME, "train", global_batch_size=5, image_size=24,
                                 is_training=True, data_dir=imagenet_shards, seed=1)
    labels = [int(v) for _, labels in dataset.take(8) for v in labels.numpy()]  # Two epochs.
    assert sorted(labels) == sorted(2 * [label - 1 for label in conftest.TRAIN_LABELS])
    images = next(iter(dataset))[0].numpy()
    assert images.shape == (5, 24, 24, 3) and np.isfinite(images).all()
    # Pixels in [0, 255] (the model normalises them), not squeezed into [0, 1].
    assert images.min() >= 0.0 and images.max() <= 255.0 and images.max() > 1.0


@pytest.mark.parametrize("is_training", [False, True])
def test_two_input_pipelines_read_disjoint_shards(imagenet_shards, is_training):
    shards = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline,
                                             num_replicas_in_sync=2)
        dataset = data.build_dataset(NAME, "train", global_batch_size=2, image_size=16,
                                     is_training=is_training, data_dir=imagenet_shards,
                                     input_context=context, repeat=False, seed=0)
        assert dataset.element_spec[0].shape.as_list() == [1, 16, 16, 3]  # Per replica.
        shards.append(labels_of(dataset))
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == [label - 1 for label in conftest.TRAIN_LABELS]


def test_fewer_files_than_pipelines_shards_records(imagenet_shards):
    shards = []
    for pipeline in range(3):  # Validation has 2 files.
        context = tf.distribute.InputContext(3, pipeline, 3)
        shards.append(labels_of(data.build_dataset(
            NAME, "validation", global_batch_size=3, image_size=16, is_training=False,
            data_dir=imagenet_shards, input_context=context)))
    flat = [label for shard in shards for label in shard]
    assert sorted(flat) == [label - 1 for label in conftest.VALIDATION_LABELS]


def test_deterministic_gives_identical_batches(imagenet_shards):
    def batches(dataset):
        return [(images.numpy(), labels.numpy()) for images, labels in dataset.take(6)]

    kwargs = dict(global_batch_size=4, image_size=20, is_training=True,
                  data_dir=imagenet_shards, deterministic=True, seed=5)
    first = data.build_dataset(NAME, "train", **kwargs)
    runs = [batches(first), batches(first), batches(data.build_dataset(NAME, "train", **kwargs))]
    for other in runs[1:]:
        for (images_a, labels_a), (images_b, labels_b) in zip(runs[0], other):
            np.testing.assert_array_equal(labels_a, labels_b)
            np.testing.assert_array_equal(images_a, images_b)
    # Epochs differ from each other (6 batches of 4 = more than one epoch of 20).
    epoch_orders = np.concatenate([labels for _, labels in runs[0]])
    assert list(epoch_orders[:4]) != list(epoch_orders[20:24])
    other_seed = batches(data.build_dataset(NAME, "train", **{**kwargs, "seed": 6}))
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(runs[0], other_seed))


def test_missing_data_dir_names_the_argument():
    with pytest.raises(ValueError, match="`data_dir` is required"):
        data.build_dataset(NAME, "train", global_batch_size=2, image_size=16, is_training=True)


def test_data_dir_without_shards_names_the_pattern(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no files match .*train-\*"):
        data.build_dataset(NAME, "train", global_batch_size=2, image_size=16, is_training=True,
                           data_dir=str(tmp_path))


def test_unknown_split(imagenet_shards):
    with pytest.raises(ValueError, match="`split` must be one of"):
        data.build_dataset(NAME, "test", global_batch_size=2, image_size=16, is_training=False,
                           data_dir=imagenet_shards)
