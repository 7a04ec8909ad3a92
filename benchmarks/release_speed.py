"""irevnet_tf against the authors' own PyTorch code on this machine, each in its own process.

    git clone <the authors' repository jhjacobsen/pytorch-i-revnet> /tmp/pytorch-i-revnet
    pip install torch                    # or into another environment: see --release_python
    python -m benchmarks.release_speed --release_dir=/tmp/pytorch-i-revnet
    python -m benchmarks.release_speed --release_dir=/tmp/pytorch-i-revnet \
        --configs=irevnet_cifar --batch_sizes=64

The release's class `models/iRevNet.py:iRevNet` is imported from `--release_dir` (nothing of
it is copied here) and built with the configuration's arguments, float32, `--threads` intra-op
threads. Its forward returns (logits, Phi) and its `inverse` maps Phi back. irevnet_tf's
model has the same architecture (random weights on both sides: speed does not depend on
them). Each side runs in a process of its own (two frameworks in one process share, and
fight over, the CPU's threads), alternating release / irevnet_tf for `--rounds` rounds; in
each, `--repeats` timed calls per path after warm-up. One JSON line per configuration gives
the medians over the rounds of each path's images per second:

- `release_forward` (float32): the release's forward, its only way to Phi;
- `tf_encode_<precision>` for each of `--precisions`: irevnet_tf's exact encode;
- `release_inverse`, `tf_decode_<precision>`;
- with `--train`: the release's training step (SGD momentum 0.9, weight decay 1e-4,
  cross-entropy; plain autodiff, which is what the release trains with) and irevnet_tf's
  compiled trainer step (`benchmarks.common.trainer_loops`, reversible) in each precision;

and the ratios `<tf path> / <release path>` (images per second), each the median of the
per-round ratios, with the machine.
"""

import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
from absl import app, flags

from benchmarks import common

FLAGS = flags.FLAGS
flags.DEFINE_string("release_dir", None, "A checkout of the authors' repository "
                    "(jhjacobsen/pytorch-i-revnet): the directory holding models/iRevNet.py.")
common.define_config_flags()
flags.DEFINE_integer("repeats", 5, "Timed calls per path and process (their median counts).")
flags.DEFINE_integer("rounds", 2, "Alternating rounds: one process per side per round.")
flags.DEFINE_integer("threads", 2, "Intra-op threads of both frameworks.")
flags.DEFINE_bool("train", True, "Also time a training step in both frameworks.")
flags.DEFINE_list("precisions", ["float32", "mixed_bfloat16"],
                  "irevnet_tf dtype policies to time.")
flags.DEFINE_string("release_python", sys.executable,
                    "The Python interpreter of the release's processes (one with torch).")
flags.DEFINE_enum("worker", None, ["release", "tf"], "Internal: measure one side here.")
flags.DEFINE_string("worker_config", None, "Internal: the configuration's arguments (JSON), "
                    "so that the release's process never imports TensorFlow.")
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


def _inputs(config, batch_size):
    """The same images and labels on both sides (NHWC float32, int labels)."""
    height, width, channels = config["input_shape"]
    rng = np.random.default_rng(0)
    images = rng.standard_normal((batch_size, height, width, channels)).astype(np.float32)
    labels = rng.integers(0, config["num_classes"], batch_size)
    return images, labels


def _timed(timings):
    """Median seconds per call of each zero-argument function, after one warm-up call."""
    seconds = {key: [] for key in timings}
    for function in timings.values():  # Warm-up (tracing) outside the timed calls.
        function()
    for _ in range(FLAGS.repeats):  # Interleaved, so that drift hits every path alike.
        for key, function in timings.items():
            start = time.perf_counter()
            function()
            seconds[key].append(time.perf_counter() - start)
    return {key: statistics.median(samples) for key, samples in seconds.items()}


def _release_worker(name, batch_size):
    import torch

    del name  # The configuration comes as --worker_config.
    torch.set_num_threads(FLAGS.threads)
    torch.set_num_interop_threads(1)
    config = json.loads(FLAGS.worker_config)
    release = _release_model(config)
    images, labels = _inputs(config, batch_size)
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
    return _timed(timings)


def _tf_worker(name, batch_size):
    import tensorflow as tf

    import irevnet_tf

    config = irevnet_tf.get_config(name)
    images, labels = _inputs(config, batch_size)
    tf_images = tf.constant(images)
    tf_labels = tf.constant(labels, tf.int32)
    base = irevnet_tf.build_irevnet(name)
    timings = {}
    for precision in FLAGS.precisions:
        model = base.with_dtype_policy(precision)
        phi = model.encode(tf_images)
        timings[f"tf_encode_{precision}"] = lambda m=model: m.encode(tf_images).numpy()
        timings[f"tf_decode_{precision}"] = lambda m=model, p=phi: m.decode(p).numpy()
        if FLAGS.train:
            strategy = tf.distribute.get_strategy()
            with strategy.scope():
                train_model = irevnet_tf.build_irevnet(name, dtype=precision)
                loops = common.trainer_loops(strategy, train_model, batch_size, LEARNING_RATE,
                                             jit_compile=False)
            dataset = tf.data.Dataset.from_tensors((tf_images, tf_labels)).repeat()
            iterator = iter(strategy.experimental_distribute_dataset(dataset))
            timings[f"tf_train_{precision}"] = lambda l=loops, i=iterator: l.train(i, 1)
    return _timed(timings)


def _run_worker(side, name, batch_size):
    """Seconds per call of each of `side`'s paths, measured in a fresh process."""
    python = FLAGS.release_python if side == "release" else sys.executable
    command = [python, "-m", "benchmarks.release_speed", f"--worker={side}",
               f"--release_dir={FLAGS.release_dir}", f"--configs={name}",
               f"--batch_sizes={batch_size}", f"--repeats={FLAGS.repeats}",
               f"--threads={FLAGS.threads}", f"--train={FLAGS.train}",
               f"--precisions={','.join(FLAGS.precisions)}"]
    if side == "release":
        import irevnet_tf

        command.append(f"--worker_config={json.dumps(irevnet_tf.get_config(name))}")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    completed = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True,
                               check=False)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode or not lines:
        raise RuntimeError(f"the {side} process for {name} failed:\n"
                           f"{completed.stderr[-3000:]}")
    return json.loads(lines[-1])


def measure(name, batch_size):
    per_round = []  # [{path: seconds per call}] merged over both sides, one per round.
    for _ in range(FLAGS.rounds):
        seconds = {}
        for side in ("release", "tf"):
            seconds.update(_run_worker(side, name, batch_size))
        per_round.append(seconds)
    result = {"config": name, "batch_size": batch_size, "threads": FLAGS.threads,
              "repeats": FLAGS.repeats, "rounds": FLAGS.rounds,
              "separate_processes": True}
    for key in per_round[0]:
        result[f"{key}_images_per_s"] = batch_size / statistics.median(
            r[key] for r in per_round)
    for precision in FLAGS.precisions:
        for tf_key, release_key in ((f"tf_encode_{precision}", "release_forward"),
                                    (f"tf_decode_{precision}", "release_inverse"),
                                    (f"tf_train_{precision}", "release_train")):
            if tf_key in per_round[0] and release_key in per_round[0]:
                ratios = [r[release_key] / r[tf_key] for r in per_round]
                result[f"{tf_key}_over_{release_key}"] = statistics.median(ratios)
                result[f"{tf_key}_over_{release_key}_per_round"] = [round(v, 3)
                                                                    for v in ratios]
    return result


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if FLAGS.worker:
        (name, batch_size), = common.config_batch_pairs(FLAGS.configs, FLAGS.batch_sizes)
        if FLAGS.worker == "tf":
            common.configure_threads(FLAGS.threads)
        worker = _release_worker if FLAGS.worker == "release" else _tf_worker
        print(json.dumps(worker(name, batch_size)), flush=True)
        return
    if not os.path.exists(os.path.join(FLAGS.release_dir, "models", "iRevNet.py")):
        raise app.UsageError(f"--release_dir={FLAGS.release_dir!r} has no models/iRevNet.py; "
                             "give a checkout of jhjacobsen/pytorch-i-revnet.")
    pairs = common.config_batch_pairs(FLAGS.configs, FLAGS.batch_sizes)
    machine = common.machine_description()
    for name, batch_size in pairs:
        print(json.dumps({**measure(name, batch_size), "machine": machine}), flush=True)


if __name__ == "__main__":
    app.run(main)
