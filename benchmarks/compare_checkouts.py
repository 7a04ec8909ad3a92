"""Speed of two checkouts of irevnet_tf, measured alternately in one run (A B A B ...).

    git worktree add /tmp/old_float bcad634      # the last float-stream commit
    python -m benchmarks.compare_checkouts --baseline=/tmp/old_float --rounds=5 \
        --configs=irevnet_cifar --batch_sizes=64

Each round runs one fresh process per side (baseline, then candidate: by default this
checkout). A process imports `irevnet_tf` from its checkout, builds the configuration with
seeded weights, and times `model.encode(x)` and `model.decode(encode(x))`'s decode, called
eagerly as users call them, after warm-up: wall-clock and CPU seconds per call (medians of
--repeats). One JSON line per configuration and path gives each side's medians over the
rounds and the candidate/baseline speed ratio, per round and their median.

Why both clocks: on a shared machine another job's load stretches wall time but hardly the
CPU time a process spends itself (2 intra-op threads, 1 inter-op thread), so the CPU-time
ratio is the steadier measure of the work each side does; alternating in one run makes the
wall ratio comparable too. The images are smooth random fields at ImageNet-normalised scale,
fed to models without pixel normalisation (the identity, in either checkout).
"""

import json
import os
import statistics
import subprocess
import sys
import time

from absl import app, flags

FLAGS = flags.FLAGS
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_string("baseline", None, "Directory of the baseline checkout (repository root).")
flags.DEFINE_string("candidate", HERE, "Directory of the candidate checkout.")
flags.DEFINE_integer("rounds", 5, "Alternating rounds (one process per side per round).")
flags.DEFINE_list("configs", ["irevnet_cifar"], "Named configurations.")
flags.DEFINE_list("batch_sizes", ["64"], "Batch sizes, one per configuration.")
flags.DEFINE_integer("repeats", 5, "Timed calls per path and process.")
flags.DEFINE_integer("threads", 2, "Intra-op threads.")
flags.DEFINE_string("worker_checkout", None, "Internal: measure this checkout in this process.")
flags.DEFINE_enum("precision", "float32", ["float32", "mixed_bfloat16", "mixed_float16"],
                  "Dtype policy of both sides' models.")
PATHS = ("encode", "decode", "train_step", "plain_train_step")
flags.DEFINE_multi_enum("paths", ["encode", "decode"], PATHS,
                        "What to time: encode, decode, train_step (a tf.function SGD step "
                        "with the memory-saving gradient), plain_train_step (plain autodiff).")


def _time(function, repeats):
    """Medians of wall-clock and process CPU seconds per call, after two warm-up calls."""
    for _ in range(2):
        function().numpy()
    wall, cpu = [], []
    for _ in range(repeats):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        function().numpy()
        wall.append(time.perf_counter() - start_wall)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def _worker():
    """Runs in the child process: `irevnet_tf` from --worker_checkout, one line per config."""
    sys.path.insert(0, FLAGS.worker_checkout)
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    import irevnet_tf

    for name, batch in zip(FLAGS.configs, FLAGS.batch_sizes):
        keras.utils.set_random_seed(0)
        model = irevnet_tf.build_irevnet(name)
        height, width, channels = model.image_shape
        rng = np.random.default_rng(0)
        coarse = rng.standard_normal((int(batch), height // 8, width // 8, channels))
        images = tf.image.resize(coarse.astype(np.float32), (height, width)) + tf.constant(
            0.3 * rng.standard_normal((int(batch), height, width, channels)), tf.float32)
        model = model.with_dtype_policy(FLAGS.precision)
        phi = model.encode(images)
        result = {"config": name, "batch_size": int(batch),
                  "irevnet_tf": os.path.dirname(os.path.abspath(irevnet_tf.__file__))}
        functions = {"encode": lambda: model.encode(images), "decode": lambda: model.decode(phi)}
        labels = tf.zeros([int(batch)], tf.int32)
        if "train_step" in FLAGS.paths:
            functions["train_step"] = _train_step(model, images, labels)
        if "plain_train_step" in FLAGS.paths:
            plain = irevnet_tf.build_irevnet(name, reversible=False).with_dtype_policy(
                FLAGS.precision)
            plain.set_weights(model.get_weights())
            functions["plain_train_step"] = _train_step(plain, images, labels)
        for path in FLAGS.paths:
            result[f"{path}_wall_s"], result[f"{path}_cpu_s"] = _time(functions[path],
                                                                      FLAGS.repeats)
        print(json.dumps(result), flush=True)


def _train_step(model, images, labels):
    """A compiled SGD step on one batch (the same in any checkout: public API only)."""
    import keras
    import tensorflow as tf

    optimizer = keras.optimizers.SGD(0.01)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                labels, tf.cast(logits, tf.float32), from_logits=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return step


def _run_side(checkout):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("PYTHONPATH", None)  # The child puts its checkout first itself.
    command = [sys.executable, os.path.abspath(__file__), f"--worker_checkout={checkout}",
               f"--configs={','.join(FLAGS.configs)}",
               f"--batch_sizes={','.join(FLAGS.batch_sizes)}", f"--repeats={FLAGS.repeats}",
               f"--threads={FLAGS.threads}", f"--precision={FLAGS.precision}"]
    command += [f"--paths={path}" for path in FLAGS.paths]
    completed = subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True)
    if completed.returncode:
        raise RuntimeError(f"measuring {checkout} failed:\n{completed.stderr[-2000:]}")
    results = [json.loads(line) for line in completed.stdout.splitlines()
               if line.startswith("{")]
    for result in results:
        if os.path.realpath(result["irevnet_tf"]) != os.path.realpath(
                os.path.join(checkout, "irevnet_tf")):
            raise RuntimeError(f"the process for {checkout} imported irevnet_tf from "
                               f"{result['irevnet_tf']}")
    return results


def main(argv):
    del argv
    if FLAGS.worker_checkout:
        _worker()
        return
    if FLAGS.baseline is None:
        raise app.UsageError("--baseline (a checkout directory) is required.")
    if len(FLAGS.batch_sizes) != len(FLAGS.configs):
        raise app.UsageError("--batch_sizes needs one entry per --configs entry.")
    for argument, directory in (("--baseline", FLAGS.baseline),
                                ("--candidate", FLAGS.candidate)):
        if not os.path.isfile(os.path.join(directory, "irevnet_tf", "__init__.py")):
            raise app.UsageError(f"{argument}={directory!r} is not an irevnet_tf checkout "
                                 f"(no irevnet_tf/__init__.py).")
    from benchmarks import common

    samples = {}  # (side, config, path, clock) -> seconds per call, one per round
    for _ in range(FLAGS.rounds):
        for side, checkout in (("baseline", FLAGS.baseline), ("candidate", FLAGS.candidate)):
            for result in _run_side(checkout):
                for path in FLAGS.paths:
                    for clock in ("wall", "cpu"):
                        samples.setdefault((side, result["config"], path, clock), []).append(
                            result[f"{path}_{clock}_s"])
    machine = common.machine_description()
    for config, batch in zip(FLAGS.configs, FLAGS.batch_sizes):
        for path in FLAGS.paths:
            line = {"config": config, "batch_size": int(batch), "path": path,
                    "precision": FLAGS.precision}
            for clock in ("wall", "cpu"):
                base = samples[("baseline", config, path, clock)]
                cand = samples[("candidate", config, path, clock)]
                # Speed ratio per round (same moment, same load), then their median.
                ratios = [b / c for b, c in zip(base, cand)]
                line[f"baseline_{clock}_s"] = round(statistics.median(base), 4)
                line[f"candidate_{clock}_s"] = round(statistics.median(cand), 4)
                line[f"candidate_speed_over_baseline_{clock}"] = round(
                    statistics.median(ratios), 3)
                line[f"ratios_{clock}"] = [round(r, 3) for r in ratios]
            line["machine"] = machine
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    app.run(main)
