"""Corrupt input ends in an error that names the dataset, the files and the problem."""

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from irevnet_tf import data
from irevnet_tf.data import tfrecord

NAME = "imagenet_tfrecord"


def good_examples(count, rng):
    return [tfrecord.make_example(
        tf.io.encode_jpeg(rng.integers(0, 256, (20, 24, 3), np.uint8)).numpy(), label)
        for label in range(1, count + 1)]


def write_validation(directory, shards):
    """`shards`: a list of lists of serialised records, one list per file."""
    os.makedirs(directory, exist_ok=True)
    for index, records in enumerate(shards):
        path = os.path.join(directory, f"validation-{index:05d}-of-{len(shards):05d}")
        with tf.io.TFRecordWriter(path) as writer:
            for record in records:
                writer.write(record)
    return str(directory)


def read_all(data_dir, is_training=False):
    dataset = data.build_dataset(NAME, "validation", global_batch_size=2, image_size=16,
                                 is_training=is_training, data_dir=data_dir, repeat=False)
    return list(data.checked_iterator(dataset, NAME, data_dir, "validation"))


@pytest.mark.parametrize("is_training", [False, True])
def test_corrupt_jpeg_names_the_file_and_record(tmp_path, is_training):
    rng = np.random.default_rng(0)
    bad_jpeg = tf.io.encode_jpeg(rng.integers(0, 256, (20, 24, 3), np.uint8)).numpy()
    bad_jpeg = bad_jpeg[:4] + b"\x00" * 40 + bad_jpeg[44:60]  # JPEG signature, broken body.
    records = good_examples(5, rng)
    records.insert(3, tfrecord.make_example(bad_jpeg, 7))
    data_dir = write_validation(tmp_path / "shards", [good_examples(4, rng), records])
    with pytest.raises(data.InputDataError) as caught:
        read_all(data_dir, is_training)
    error = caught.value
    message = str(error)
    assert error.kind == "bad_image"
    assert "imagenet_tfrecord" in message and data_dir in message
    assert "validation-*" in message and "does not decode" in message
    bad_file = os.path.join(data_dir, "validation-00001-of-00002")
    assert error.location.path == bad_file and error.location.index == 3
    assert f"{bad_file}, record 3" in message
    assert isinstance(error.__cause__, tf.errors.InvalidArgumentError)


def test_truncated_tfrecord_file_names_the_file(tmp_path):
    rng = np.random.default_rng(1)
    data_dir = write_validation(tmp_path / "shards", [good_examples(4, rng), good_examples(4, rng)])
    path = os.path.join(data_dir, "validation-00000-of-00002")
    with open(path, "rb") as handle:
        content = handle.read()
    with open(path, "wb") as handle:
        handle.write(content[:-25])
    with pytest.raises(data.InputDataError) as caught:
        read_all(data_dir)
    error = caught.value
    assert error.kind == "corrupt_file"
    assert "truncated or corrupt" in str(error)
    assert error.location.path == path and error.location.index == 3
    assert path in str(error)


def test_record_that_is_not_an_example(tmp_path):
    rng = np.random.default_rng(2)
    records = good_examples(3, rng) + [b"this is not a tf.Example"]
    data_dir = write_validation(tmp_path / "shards", [records])
    with pytest.raises(data.InputDataError) as caught:
        read_all(data_dir)
    assert caught.value.kind == "not_an_example"
    assert "image/encoded" in str(caught.value) and "image/class/label" in str(caught.value)
    assert caught.value.location.index == 3


def test_zero_based_label_is_reported(tmp_path):
    rng = np.random.default_rng(3)
    records = good_examples(3, rng)
    records[1] = tfrecord.make_example(
        tf.io.encode_jpeg(np.zeros((8, 8, 3), np.uint8)).numpy(), 0)
    data_dir = write_validation(tmp_path / "shards", [records])
    with pytest.raises(data.InputDataError) as caught:
        read_all(data_dir)
    assert caught.value.kind == "bad_label"
    assert "0-based" in str(caught.value) and caught.value.location.index == 1


def test_describe_input_error_without_locating(tmp_path, imagenet_shards):
    data_dir = str(tmp_path / "copy")
    shutil.copytree(imagenet_shards, data_dir)
    error = tf.errors.DataLossError(None, None, "truncated record at 12")
    described = data.describe_input_error(error, NAME, data_dir, "train", locate=False)
    assert described.location is None
    assert "4 files matching" in str(described) and "truncated record at 12" in str(described)
    # A clean data_dir: the scan says it found nothing.
    described = data.describe_input_error(error, NAME, data_dir, "train")
    assert "read cleanly" in str(described)


def test_classify_input_error():
    assert data.classify_input_error(tf.errors.InvalidArgumentError(
        None, None, "Could not parse example input, value: 'x'")) == "not_an_example"
    assert data.classify_input_error(tf.errors.InvalidArgumentError(
        None, None, "Unknown image file format. One of JPEG, PNG required.")) == "bad_image"
    assert data.classify_input_error(ValueError("something else")) == "other"


def test_unknown_dataset_name_is_refused_before_tensorflow_datasets_logs(caplog):
    """tensorflow-datasets logs "Failed to load dataset ... permissions" (INFO) for a name it
    does not know; the refusal comes first, so the user sees only our one-line error."""
    import logging

    from irevnet_tf.data import info

    with caplog.at_level(logging.DEBUG):
        with pytest.raises(ValueError, match="Unknown dataset 'no_such_dataset'"):
            info.dataset_info("no_such_dataset")
    assert [record.getMessage() for record in caplog.records] == []
