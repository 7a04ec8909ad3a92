"""Input pipelines: tensorflow-datasets, TFRecord shards, synthetic data and the embedded digits.

    from irevnet_tf import data
    info = data.dataset_info("imagenet_tfrecord")
    ds = data.build_dataset("imagenet_tfrecord", "train", global_batch_size=1024,
                            image_size=224, is_training=True, data_dir="gs://bucket/imagenet",
                            input_context=input_context)
    try:
        for images, labels in ds: ...
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as error:
        raise data.describe_input_error(error, "imagenet_tfrecord", data_dir, "train") from error
"""

from irevnet_tf.data import digits, preprocessing, tfrecord
from irevnet_tf.data.errors import (InputDataError, checked_iterator, classify_input_error,
                                    describe_input_error)
from irevnet_tf.data.info import DatasetInfo, dataset_info
from irevnet_tf.data.pipeline import build_dataset
from irevnet_tf.data.tfrecord import CorruptRecord, find_corrupt_records

__all__ = ["CorruptRecord", "DatasetInfo", "InputDataError", "build_dataset", "checked_iterator",
           "classify_input_error", "dataset_info", "describe_input_error", "digits",
           "find_corrupt_records", "preprocessing", "tfrecord"]
