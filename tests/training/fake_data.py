"""A small in-test stand-in for `irevnet_tf.data` (same signatures): a learnable image task.

Each class is a fixed random pattern; an example is its class's pattern plus noise, so a
few steps of SGD make the loss go down. Examples are a deterministic function of their
index, which lets tests rebuild the exact per-replica batches independently.
"""

import dataclasses

import numpy as np
import tensorflow as tf


@dataclasses.dataclass
class FakeInfo:
    name: str = "fake"
    num_classes: int = 4
    channels: int = 3
    default_image_size: int = 16
    train_split: str = "train"
    eval_split: str = "test"
    num_train_examples: int = 256
    num_eval_examples: int = 64
    mean: tuple = (127.5, 127.5, 127.5)
    std: tuple = (64.0, 64.0, 64.0)
    preprocessing: str = "fake"


def example(index, split, info, image_size):
    """The example `index` of `split` as numpy arrays (image float32 HWC pixels, label int32).

    The image is pixels, as the real pipelines yield them: `info.mean + info.std * z` for
    the class pattern plus noise z, so that the model's normalisation gives z back.
    """
    patterns = np.random.default_rng(1234).normal(
        size=(info.num_classes, image_size, image_size, info.channels))
    offset = 0 if split == info.train_split else 10**6
    rng = np.random.default_rng(offset + index)
    label = int(index % info.num_classes)
    image = patterns[label] + 0.5 * rng.normal(size=patterns[label].shape)
    image = image * np.asarray(info.std) + np.asarray(info.mean)
    return image.astype(np.float32), np.int32(label)


def batches(split, info, image_size, batch_size, start=0, nan_from_batch=None):
    """Endless batches of consecutive examples (index order, wrapping around the split).

    From batch `nan_from_batch` on (training split only), images are NaN.
    """
    size = info.num_train_examples if split == info.train_split else info.num_eval_examples
    index, count = start, 0
    while True:
        items = [example((index + k) % size, split, info, image_size) for k in range(batch_size)]
        index += batch_size
        images = np.stack([i[0] for i in items])
        if (nan_from_batch is not None and count >= nan_from_batch
                and split == info.train_split):
            images[:] = np.nan
        count += 1
        yield images, np.array([i[1] for i in items], np.int32)


def make_builder(info, calls=None, nan_from_batch=None):
    """A `build_dataset` stand-in that batches examples in index order (no shuffling).

    With an input context, each pipeline yields per-replica batches; replica r of step s
    gets examples [(s * replicas + r) * per_replica, ...). `nan_from_batch`: see `batches`.
    """

    def build_dataset(name, split, *, global_batch_size, image_size, is_training,
                      data_dir=None, input_context=None, seed=None, deterministic=False,
                      repeat=None):
        if calls is not None:
            calls.append(dict(name=name, split=split, global_batch_size=global_batch_size,
                              image_size=image_size, is_training=is_training, seed=seed,
                              deterministic=deterministic, repeat=repeat))
        batch = (input_context.get_per_replica_batch_size(global_batch_size)
                 if input_context else global_batch_size)
        signature = (tf.TensorSpec([batch, image_size, image_size, info.channels], tf.float32),
                     tf.TensorSpec([batch], tf.int32))
        return tf.data.Dataset.from_generator(
            lambda: batches(split, info, image_size, batch, nan_from_batch=nan_from_batch),
            output_signature=signature)

    return build_dataset
