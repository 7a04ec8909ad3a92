"""The input benchmark's helpers: ImageNet-like shards that the pipeline reads, and rates."""

import numpy as np
import tensorflow as tf

from irevnet_tf import data
from irevnet_tf.data import throughput


def test_synthetic_imagenet_shards_are_readable_jpegs(tmp_path):
    sizes = throughput.write_synthetic_imagenet(str(tmp_path), 6, height=30, width=40,
                                                num_shards=2)
    assert len(sizes) == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "train-00000-of-00002", "train-00001-of-00002",
        "validation-00000-of-00002", "validation-00001-of-00002"]
    record = next(iter(tf.data.TFRecordDataset(str(tmp_path / "train-00000-of-00002"))))
    encoded, label = data.tfrecord.parse_example(record)
    assert tf.io.decode_jpeg(encoded).shape == (30, 40, 3)
    assert 0 <= int(label) < 1000
    dataset = data.build_dataset("imagenet_tfrecord", "train", global_batch_size=2,
                                 image_size=16, is_training=True, data_dir=str(tmp_path))
    rates = throughput.images_per_second(throughput.with_threads(dataset, 1), 2,
                                         num_batches=2, runs=2, warmup_batches=1)
    assert len(rates) == 2 and all(np.isfinite(rates)) and min(rates) > 0


def test_synthetic_photo_is_smoother_than_noise():
    image = throughput.synthetic_photo(np.random.default_rng(0), 60, 80).astype(np.float64)
    noise = np.random.default_rng(1).integers(0, 256, image.shape).astype(np.float64)
    def roughness(values):
        return np.abs(np.diff(values, axis=1)).mean()
    assert image.shape == (60, 80, 3) and roughness(image) < roughness(noise) / 2
