"""irevnet_tf against the authors' own PyTorch code, timed in one process on this machine.

    git clone <the authors' repository jhjacobsen/pytorch-i-revnet> /tmp/pytorch-i-revnet
    pip install torch
    python -m benchmarks.release_speed --release_dir=/tmp/pytorch-i-revnet
    python -m benchmarks.release_speed --release_dir=/tmp/pytorch-i-revnet \
        --configs=irevnet_cifar --batch_sizes=64

The release's class `models/iRevNet.py:iRevNet` is imported from `--release_dir` (nothing of
it is copied here) and built with the configuration's arguments, float32, 2 intra-op
threads. Its forward returns (logits, Phi) and its `inverse` maps Phi back. irevnet_tf's
model has the same architecture (random weights on both sides: speed does not depend on
them). Alternating the two frameworks, `--repeats` timed calls each after warm-up, this
prints one JSON line per configuration with the medians:

- `release_forward` (float32): the release's forward, its only way to Phi;
- `tf_encode_<precision>` for float32 and mixed_bfloat16: irevnet_tf's exact encode;
- `release_inverse`, `tf_decode_<precision>`;
- with `--train`: the release's training step (SGD momentum 0.9, weight decay 1e-4,
  cross-entropy; plain autodiff, which is what the release trains with) and irevnet_tf's
  compiled trainer step (`benchmarks.common.trainer_loops`, reversible) in each precision;

and the ratios `<tf path> / <release path>` in images per second, measured in the same run.
"""

import os
import statistics
import sys
import time

import numpy as np
from absl import app, flags

from benchmarks import common

FLAGS = flags.FLAGS
flags.DEFINE_string("release_dir", None, "A checkout of the authors' repository "
                    "(jhjacobsen/pytorch-i-revnet): the directory holding models/iRevNet.py.")
common.define_config_flags()
flags.DEFINE_integer("repeats", 5, "Timed calls per measurement (the median is reported).")
flags.DEFINE_integer("threads", 2, "Intra-op threads of both frameworks.")
flags.DEFINE_bool("train", True, "Also time a training step in both frameworks.")
flags.DEFINE_list("precisions", ["float32", "mixed_bfloat16"],
                  "irevnet_tf dtype policies to time.")
flags.mark_flag_as_required("release_dir")

LEARNING_RATE = 0.1


def _release_model(config):
    """The authors' iRevNet for an irevnet_tf configuration dict."""
    path = os.path.join(FLAGS.release_dir, "models", "iRevNet.py")
    if not os.path.exists(path):
        raise app.UsageError(f"--release_dir={FLAGS.release_dir!r} has no models/iRevNet.py; "
                             "give a checkout of jhjacobsen/pytorch-i-revnet.")
    sys.path.insert(0, os.path.abspath(FLAGS.release_dir))
    from models.iRevNet import iRevNet  # pylint: disable=import-error,import-outside-toplevel

    height, width, channels = config["input_shape"]
    devnull = open(os.devnull, "w", encoding="utf-8")  # The release prints while building.
    stdout, sys.stdout = sys.stdout, devnull
    try:
        return iRevNet(nBlocks=list(config["blocks"]), nStrides=list(config["strides"]),
                       nClasses=config["num_classes"], nChannels=list(config["channels"]),
                       init_ds=config["init_ds"], dropout_rate=config["dropout_rate"],
                       affineBN=True, in_shape=[channels, height, width], mult=config["mult"])
    finally:
        sys.stdout = stdout
        devnull.close()


def measure(name, batch_size):
    import tensorflow as tf
    import torch

    import irevnet_tf

    torch.set_num_threads(FLAGS.threads)
    config = irevnet_tf.get_config(name)
    release = _release_model(config)
    height, width, channels = config["input_shape"]
    rng = np.random.default_rng(0)
    images = rng.standard_normal((batch_size, height, width, channels)).astype(np.float32)
    labels = rng.integers(0, config["num_classes"], batch_size)
    torch_images = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    torch_labels = torch.from_numpy(labels)

    release.eval()
    with torch.no_grad():
        _, torch_phi = release(torch_images)

    def release_forward():
        with torch.no_grad():
            release(torch_images)

    def release_inverse():
        with torch.no_grad():
            release.inverse(torch_phi)

    optimizer = torch.optim.SGD(release.parameters(), lr=LEARNING_RATE,
                                momentum=common.MOMENTUM, weight_decay=common.L2_DECAY)

    def release_train():
        release.train()
        optimizer.zero_grad()
        logits, _ = release(torch_images)
        torch.nn.functional.cross_entropy(logits, torch_labels).backward()
        optimizer.step()

    timings = {"release_forward": release_forward, "release_inverse": release_inverse}
    if FLAGS.train:
        timings["release_train"] = release_train
    base = irevnet_tf.build_irevnet(name)
    tf_images = tf.constant(images)
    tf_labels = tf.constant(labels, tf.int32)
    for precision in FLAGS.precisions:
        model = base.with_dtype_policy(precision)
        phi = model.encode(tf_images)
        timings[f"tf_encode_{precision}"] = (
            lambda m=model: m.encode(tf_images).numpy())
        timings[f"tf_decode_{precision}"] = (
            lambda m=model, p=phi: m.decode(p).numpy())
        if FLAGS.train:
            strategy = tf.distribute.get_strategy()
            with strategy.scope():
                train_model = irevnet_tf.build_irevnet(name, dtype=precision)
                loops = common.trainer_loops(strategy, train_model, batch_size, LEARNING_RATE,
                                             jit_compile=False)
            dataset = tf.data.Dataset.from_tensors((tf_images, tf_labels)).repeat()
            iterator = iter(strategy.experimental_distribute_dataset(dataset))
            timings[f"tf_train_{precision}"] = lambda l=loops, i=iterator: l.train(i, 1)
    seconds = {key: [] for key in timings}
    for key, function in timings.items():  # Warm-up (tracing) outside the timed rounds.
        function()
    for _ in range(FLAGS.repeats):  # Alternate, so that drift hits both frameworks alike.
        for key, function in timings.items():
            start = time.perf_counter()
            result = function()
            if hasattr(result, "numpy"):
                result.numpy()
            seconds[key].append(time.perf_counter() - start)
    result = {"config": name, "batch_size": batch_size, "threads": FLAGS.threads,
              "repeats": FLAGS.repeats}
    for key, samples in seconds.items():
        result[f"{key}_images_per_s"] = batch_size / statistics.median(samples)
    for precision in FLAGS.precisions:
        for tf_key, release_key in ((f"tf_encode_{precision}", "release_forward"),
                                    (f"tf_decode_{precision}", "release_inverse"),
                                    (f"tf_train_{precision}", "release_train")):
            if f"{tf_key}_images_per_s" in result and f"{release_key}_images_per_s" in result:
                result[f"{tf_key}_over_{release_key}"] = (
                    result[f"{tf_key}_images_per_s"] / result[f"{release_key}_images_per_s"])
    return result


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    common.print_measurements(measure, FLAGS.configs, FLAGS.batch_sizes, FLAGS.threads)


if __name__ == "__main__":
    app.run(main)
