"""Measuring input pipelines: ImageNet-like JPEG shards to read, and images per second.

Used by benchmarks/input_pipeline.py (and its test) to tell whether a host's input
pipeline or the model limits training.
"""

import os
import time

import numpy as np
import tensorflow as tf

from irevnet_tf.data import tfrecord


def sample_photographs():
    """The photographs scikit-learn ships (427x640), uint8; an empty list without it."""
    try:
        from sklearn.datasets import load_sample_images
    except ImportError:
        return []
    return list(load_sample_images().images)


def synthetic_photo(rng, height, width, photographs=()):
    """A uint8 [height, width, 3] image that compresses and decodes like a photograph.

    A random crop (random scale and position, random flip) of one of `photographs`,
    resized to the requested size; without photographs, smooth colour fields
    (bicubic-upsampled coarse noise) plus grain. At 500x375 and JPEG quality 95 either
    gives 80-100 kB per image, somewhat below ImageNet's average of about 110 kB; random
    noise would give far larger files that decode far slower than photographs.
    """
    if len(photographs):
        photo = photographs[rng.integers(len(photographs))]
        scale = rng.uniform(0.85, 1.0)  # Near 1:1, keeping the photographs' fine detail.
        crop_h = int(scale * photo.shape[0])
        crop_w = min(photo.shape[1], int(crop_h * width / height))
        top = rng.integers(photo.shape[0] - crop_h + 1)
        left = rng.integers(photo.shape[1] - crop_w + 1)
        crop = photo[top:top + crop_h, left:left + crop_w]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        image = tf.image.resize(crop[np.newaxis].astype(np.float32), [height, width])[0].numpy()
        return np.clip(image + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8)
    coarse = rng.uniform(0, 255, (max(2, height // 24), max(2, width // 24), 3))
    smooth = tf.image.resize(coarse[np.newaxis], [height, width], method="bicubic")[0].numpy()
    grain = rng.normal(0, 20, (height, width, 3))
    return np.clip(smooth + grain, 0, 255).astype(np.uint8)


def write_synthetic_imagenet(data_dir, num_images, height=375, width=500, num_shards=8,
                             seed=0, quality=95):
    """Writes `num_images` JPEGs (`synthetic_photo`) with random 1-based labels as train-*
    and validation-* shards (the same images in both) in the imagenet_tfrecord layout;
    returns the JPEGs' sizes in bytes."""
    rng = np.random.default_rng(seed)
    photographs = sample_photographs()
    records, sizes = [], []
    for _ in range(num_images):
        encoded = tf.io.encode_jpeg(synthetic_photo(rng, height, width, photographs),
                                    quality=quality).numpy()
        sizes.append(len(encoded))
        records.append(tfrecord.make_example(encoded, int(rng.integers(1, 1001))))
    for split in ("train", "validation"):
        tfrecord.write_shards(data_dir, split, records, num_shards)
    return sizes


def with_threads(dataset, threads):
    """`dataset` running on its own pool of `threads` threads (None: TensorFlow's default)."""
    if threads is None:
        return dataset
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    options.threading.max_intra_op_parallelism = 1
    return dataset.with_options(options)


def images_per_second(dataset, batch_size, num_batches, runs, warmup_batches=2):
    """Images/s of `runs` timed runs over `num_batches` batches each, after a warm-up.

    The dataset must repeat (or hold warmup + runs * num_batches batches); one iterator
    serves all runs so that start-up costs (shuffle buffer, thread pools) are paid once.
    """
    iterator = iter(dataset)
    for _ in range(warmup_batches):
        next(iterator)
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(num_batches):
            next(iterator)
        rates.append(num_batches * batch_size / (time.perf_counter() - start))
    return rates


def host_cores():
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
