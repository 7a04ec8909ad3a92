"""`build_dataset`: the one entry point that turns a dataset name into batches for the model.

Every dataset goes through the same steps: this input pipeline's share of the examples
(sources.py) -> shuffle and repeat (training) -> parse, decode and preprocess each example
in parallel (preprocessing.py) -> fixed-size batches -> prefetch. Batches have fully static
shapes (`drop_remainder=True`), as TPUs require.

Randomness. Each example's augmentation uses stateless random ops seeded by
`(seed of this pipeline, position of the example in the pipeline's stream)`. With
`deterministic=True` the stream order is reproducible too: elements keep their order
through the parallel steps, and epoch n's file order and shuffle come from stateless ops
seeded by `(seed, n)` (`block_shuffle`), so the same arguments give exactly the same
batches in every run and every iteration of the dataset, whatever TensorFlow's global
seed. With `deterministic=False` (the default) training elements come in whatever order
parallel reading and decoding finish: faster, not reproducible.

Evaluation data are a function of the data set alone, so that the same weights always
evaluate to the same numbers (a resumed finished run re-evaluates to what it reported):
evaluation pipelines keep their elements in order whatever `deterministic` says (no
augmentation or shuffling happens there, so order is all that could change), and the
synthetic evaluation splits are drawn from a fixed seed (`SYNTHETIC_EVAL_SEED`), not the
run's. The synthetic training split follows `seed` like any training data.
"""

import numpy as np
import tensorflow as tf

from irevnet_tf.data import info as info_lib
from irevnet_tf.data import preprocessing
from irevnet_tf.data import sources
from irevnet_tf.data.synthetic import synthetic_dataset
from irevnet_tf import validation

# deterministic=True without a seed uses this one.
DEFAULT_SEED = 0
# Datasets that live in files and need `data_dir` (other tensorflow-datasets datasets fall back
# to tensorflow-datasets' default directory).
NEEDS_DATA_DIR = (info_lib.IMAGENET_TFRECORD, info_lib.IMAGENET_TFDS)
SYNTHETIC_SPLITS = ("train", "validation", "test")
# The seed of the synthetic evaluation splits: the same images in every run (see above).
SYNTHETIC_EVAL_SEED = 20180213
_MANY_EPOCHS = 2 ** 62


def build_dataset(name, split, *, global_batch_size, image_size, is_training, data_dir=None,
                  input_context=None, seed=None, deterministic=False, repeat=None):
    """Batches of `(images, labels)` from a supported dataset.

    Args:
        name: "imagenet2012" (tensorflow-datasets), "imagenet_tfrecord" (TFRecord shards),
            "synthetic", "digits", or another image classification dataset of
            tensorflow-datasets such as "cifar10"; see `dataset_info`.
        split: the split to read ("train", "validation", "test", or a tensorflow-datasets
            split such as "train[:90%]"); None: `train_split` when training, else `eval_split`.
        global_batch_size: examples per step over all replicas.
        image_size: height and width of the output images.
        is_training: training augmentation and shuffling (True) or evaluation preprocessing.
        data_dir: where the data lives (required for "imagenet2012" and "imagenet_tfrecord";
            local path or bucket).
        input_context: a `tf.distribute.InputContext` (from
            `strategy.distribute_datasets_from_function`): batches are then per replica and
            this pipeline reads only its share of the data.
        seed: integer seed of shuffling and augmentation; None: random (or 0 when
            `deterministic`).
        deterministic: exactly reproducible output (see the module docstring); slower.
        repeat: repeat the data forever; defaults to `is_training`.
    Returns:
        A tf.data.Dataset of `(images float32 [B, S, S, C], labels int32 [B])`: pixels in
        [0, 255], not normalised (the model normalises them with `dataset_info(name)`'s
        mean/std), with B = `global_batch_size`, or the per-replica
        batch with `input_context`. Incomplete final batches are dropped.
    """
    info_lib.check_name(name)
    image_size = _positive_int("image_size", image_size)
    global_batch_size = _positive_int("global_batch_size", global_batch_size)
    is_training = _boolean("is_training", is_training)
    deterministic = _boolean("deterministic", deterministic)
    repeat = is_training if repeat is None else _boolean("repeat", repeat)
    batch_size, pipeline_id, num_pipelines = _per_replica_batch(global_batch_size, input_context)
    seed = _seed(seed, deterministic)
    # Evaluation keeps its order (see the module docstring): a few percent of throughput
    # at most, since evaluation decodes without augmentation.
    deterministic = deterministic or not is_training
    if name in NEEDS_DATA_DIR and not data_dir:
        raise ValueError(f"build_dataset({name!r}): `data_dir` is required: the directory "
                         "(local or gs://...) that holds the "
                         + ("train-* and validation-* TFRecord shards."
                            if name == info_lib.IMAGENET_TFRECORD
                            else "prepared tensorflow-datasets data."))
    info = info_lib.dataset_info(name, data_dir)
    if split is None:
        split = info.train_split if is_training else info.eval_split
    if not isinstance(split, str):
        raise ValueError(f"build_dataset({name!r}): `split` must be a string such as "
                         f"{info.train_split!r} or {info.eval_split!r}, got {split!r}.")

    if name == info_lib.SYNTHETIC:
        data_seed = seed if is_training else SYNTHETIC_EVAL_SEED
        dataset = _synthetic(info, split, batch_size, image_size, is_training, repeat,
                             _seed_pair(data_seed, pipeline_id, f"synthetic:{split}"))
    else:
        source = _source(info, split, data_dir, image_size, is_training=is_training,
                         deterministic=deterministic, pipeline_id=pipeline_id,
                         num_pipelines=num_pipelines)
        if not repeat and source.num_examples is not None and source.num_examples < batch_size:
            raise ValueError(
                f"build_dataset({name!r}, {split!r}): the batch of {batch_size} (per replica) is "
                f"larger than the {source.num_examples} examples this input pipeline reads; "
                "without `repeat` no batch would be produced. Use a smaller "
                "`global_batch_size` or `repeat=True`.")
        elements = _shuffled_epochs(source, is_training=is_training, repeat=repeat,
                                    deterministic=deterministic, seed=seed,
                                    pipeline_id=pipeline_id)
        example_seed_base = _seed_pair(seed, pipeline_id, "examples")[0]

        def preprocess(index, element):
            image, label = source.parse(element)
            if is_training:
                image = source.train_fn(
                    image, tf.stack([tf.constant(example_seed_base, tf.int64), index]))
            else:
                image = source.eval_fn(image)
            return image, label

        dataset = elements.enumerate().map(preprocess, num_parallel_calls=tf.data.AUTOTUNE,
                                           deterministic=deterministic)
        dataset = dataset.batch(batch_size, drop_remainder=True)
    dataset = dataset.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = deterministic
    return dataset.with_options(options)


def _source(info, split, data_dir, image_size, *, is_training, deterministic, pipeline_id,
            num_pipelines):
    shard = dict(pipeline_id=pipeline_id, num_pipelines=num_pipelines)
    if info.name == info_lib.IMAGENET_TFRECORD:
        return sources.tfrecord_source(info, split, data_dir, image_size,
                                       deterministic=deterministic, **shard)
    if info.name == info_lib.DIGITS:
        return sources.digits_source(info, split, image_size, **shard)
    return sources.tfds_source(info, split, data_dir, image_size, is_training=is_training,
                               deterministic=deterministic, **shard)


def _shuffled_epochs(source, *, is_training, repeat, deterministic, seed, pipeline_id):
    """The source's elements: when training shuffled anew in each epoch, repeated if asked."""
    if not is_training:
        elements = source.epoch(False, None)
        return elements.repeat() if repeat else elements
    epoch_seed_base, element_seed = _seed_pair(seed, pipeline_id, "shuffle")
    if not deterministic:
        elements = source.epoch(True, None).shuffle(
            source.shuffle_buffer, seed=element_seed, reshuffle_each_iteration=True)
        return elements.repeat() if repeat else elements
    # Epoch n is shuffled by stateless ops seeded with (seed, n): the same in every run and
    # every iteration, different from epoch to epoch, and independent of TensorFlow's
    # global seed (which tf.data's shuffle would depend on).
    epoch_seed_base = tf.constant(epoch_seed_base, tf.int64)

    def epoch(number):
        file_seed, block_seed = tf.unstack(preprocessing.split_seed(
            tf.stack([epoch_seed_base, number]), 2))
        return block_shuffle(source.epoch(True, file_seed), source.shuffle_buffer, block_seed)

    return tf.data.Dataset.range(_MANY_EPOCHS if repeat else 1).flat_map(epoch)


def block_shuffle(dataset, block_size, seed):
    """Shuffles each run of `block_size` consecutive elements by a stateless permutation.

    The deterministic counterpart of `Dataset.shuffle(block_size)`: it mixes as far, but
    within blocks rather than through a sliding buffer.
    """

    def permute(index, block):
        count = tf.shape(tf.nest.flatten(block)[0])[0]
        block_seed = tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), index)
        order = tf.argsort(tf.random.stateless_uniform([count], seed=block_seed))
        return tf.nest.map_structure(lambda values: tf.gather(values, order), block)

    return dataset.batch(block_size).enumerate().map(permute).unbatch()


def _synthetic(info, split, batch_size, image_size, is_training, repeat, seed_pair):
    if split not in SYNTHETIC_SPLITS:
        raise ValueError(f"synthetic: `split` must be one of {SYNTHETIC_SPLITS}, got {split!r}.")
    num_examples = info.num_train_examples if split == "train" else info.num_eval_examples
    num_batches = None if repeat else max(1, num_examples // batch_size)
    return synthetic_dataset(batch_size, image_size, info.channels, info.num_classes, seed_pair,
                             num_batches=num_batches, mean=info.mean, std=info.std)


# ---------------------------------------------------------------------------------------------
# Argument checks.

def _positive_int(argument, value):
    return validation.check_int(value, f"build_dataset: `{argument}`", 1,
                                what="a positive int", numpy_ints=True)


def _boolean(argument, value):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"build_dataset: `{argument}` must be True or False, got {value!r}.")
    return bool(value)


def _per_replica_batch(global_batch_size, input_context):
    """`(batch size of this pipeline's replicas, pipeline id, number of pipelines)`."""
    if input_context is None:
        return global_batch_size, 0, 1
    replicas = input_context.num_replicas_in_sync
    if global_batch_size % replicas:
        raise ValueError(f"build_dataset: `global_batch_size` ({global_batch_size}) must be "
                         f"divisible by the number of replicas ({replicas}, "
                         "input_context.num_replicas_in_sync).")
    pipelines = input_context.num_input_pipelines
    pipeline_id = input_context.input_pipeline_id
    if not 0 <= pipeline_id < pipelines:
        raise ValueError(f"build_dataset: input_context.input_pipeline_id ({pipeline_id}) must "
                         f"be in [0, {pipelines}).")
    return input_context.get_per_replica_batch_size(global_batch_size), pipeline_id, pipelines


def _seed(seed, deterministic):
    if seed is None:
        if deterministic:
            return DEFAULT_SEED
        return int(np.random.SeedSequence().generate_state(1, np.uint32)[0])
    return validation.check_int(seed, "build_dataset: `seed`", what="an int or None",
                                numpy_ints=True)


def _seed_pair(seed, pipeline_id, purpose):
    """Two independent int63 seeds for one purpose of one input pipeline."""
    purpose_code = int.from_bytes(purpose.encode()[:8], "little")
    state = np.random.SeedSequence([seed % 2 ** 63, pipeline_id, purpose_code]).generate_state(
        2, np.uint64)
    return tuple(int(value) >> 1 for value in state)
