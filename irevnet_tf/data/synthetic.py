"""Synthetic data: one random batch, made once and repeated, to measure the model alone.

The batch (pixels in [0, 255] that are normal once normalised, and uniform labels) comes from
stateless random ops, is cached by tf.data after the first step and then costs nothing
but the copy to the device: what remains is the model's own speed.
"""

import tensorflow as tf


def synthetic_dataset(batch_size, image_size, channels, num_classes, seed, num_batches=None,
                      mean=(0.0,), std=(1.0,)):
    """`(images float32 [B, S, S, C], labels int32 [B])`, the same batch every step.

    Args:
        seed: `[2]` integer stateless seed.
        num_batches: how many batches; None repeats forever.
        mean, std: the images are `mean + std * N(0, 1)` per channel, clipped to [0, 255]:
            pixels whose normalisation (the dataset info's mean/std) is about N(0, 1).
    """
    mean = tf.constant(mean, tf.float32)
    std = tf.constant(std, tf.float32)
    image_seed, label_seed = tf.unstack(
        tf.random.experimental.stateless_split(tf.constant(seed, tf.int64), num=2))

    def random_batch(_):
        images = tf.random.stateless_normal(
            [batch_size, image_size, image_size, channels], seed=image_seed)
        images = tf.clip_by_value(images * std + mean, 0.0, 255.0)
        labels = tf.random.stateless_uniform(
            [batch_size], seed=label_seed, minval=0, maxval=num_classes, dtype=tf.int32)
        return images, labels

    batch = tf.data.Dataset.range(1).map(random_batch).cache()
    return batch.repeat() if num_batches is None else batch.repeat(num_batches)
