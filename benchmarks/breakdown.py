"""Where the time of encode, decode and a training step goes, by kind of op, on this machine.

    python -m benchmarks.breakdown                                  # irevnet301 (8), float32
    python -m benchmarks.breakdown --configs=irevnet_cifar --batch_sizes=64 \
        --precisions=float32,mixed_bfloat16 --paths=encode,decode,train_step

For each configuration, precision and path this prints one JSON line: the call's wall time
(median of --repeats unprofiled calls after warm-up) and seconds per call in each category of
`irevnet_tf.benchmarking.op_profile` (convolution; batch norm + ReLU; casts; the exact
stream's round, checks, casts, integer add and saturation; data movement; variables and
optimizer; other element-wise; overhead = wall time no op accounts for), from TensorFlow's
profiler over --profile_calls calls, with each category's share of the ops' time, the
convolution share among them, and the machine (CPU, AVX-512/AMX features, oneDNN).
A table for reading follows each line on stderr.

Paths: `encode` and `decode` are `model.encode(x)` / `model.decode(phi)` called eagerly as
users call them (they run compiled graphs inside); `train_step` is the trainer's compiled
step (`benchmarks.common.trainer_loops`: MomentumSGD, the memory-saving gradient);
`plain_train_step` the same with plain autodiff (`reversible=False`). One inter-op
thread, so that the ops run one at a time and their times add up to the call's.
"""

import json
import sys

from absl import app, flags

from benchmarks import common

FLAGS = flags.FLAGS
common.define_config_flags(batch_sizes=("8",))
FLAGS.set_default("configs", ["irevnet301"])
flags.DEFINE_list("precisions", ["float32"], "Dtype policies: float32, mixed_bfloat16, "
                  "mixed_float16.")
PATHS = ("encode", "decode", "train_step", "plain_train_step")
flags.DEFINE_list("paths", ["encode", "decode", "train_step"],
                  f"What to break down: {', '.join(PATHS)}.")
flags.DEFINE_integer("repeats", 5, "Unprofiled timed calls (the median is the wall time).")
flags.DEFINE_integer("profile_calls", 2, "Profiled calls (op times are per call).")
flags.DEFINE_integer("threads", 2, "Intra-op threads.")


def _validate():
    for flag, values, accepted in (("--precisions", FLAGS.precisions, common.PRECISIONS),
                                   ("--paths", FLAGS.paths, PATHS)):
        unknown = [value for value in values if value not in accepted]
        if unknown or not values:
            raise app.UsageError(f"{flag} accepts {', '.join(accepted)}; got "
                                 f"{', '.join(values) or 'nothing'}.")


def _functions(name, batch_size, precision):
    """{path: zero-argument callable} for the wanted paths, warmed up (traced)."""
    import tensorflow as tf

    import irevnet_tf

    config = irevnet_tf.get_config(name)
    height, width, channels = config["input_shape"]
    images = tf.constant(common.natural_images(batch_size, height, channels))
    labels = tf.zeros([batch_size], tf.int32)
    functions = {}
    if {"encode", "decode"} & set(FLAGS.paths):
        model = irevnet_tf.build_irevnet(
            name, pixel_mean=common.IMAGE_MEAN, pixel_std=common.IMAGE_STD)
        for step in range(3):  # Batch-norm statistics like a trained model's.
            model.encode(tf.roll(images, step, axis=0), training=True)
        model = model.with_dtype_policy(precision)
        phi = model.encode(images)
        functions["encode"] = lambda: model.encode(images)
        functions["decode"] = lambda: model.decode(phi)
    for path, reversible in (("train_step", True), ("plain_train_step", False)):
        if path not in FLAGS.paths:
            continue
        strategy = tf.distribute.get_strategy()
        with strategy.scope():
            train_model = irevnet_tf.build_irevnet(name, dtype=precision, reversible=reversible,
                                                   pixel_mean=common.IMAGE_MEAN,
                                                   pixel_std=common.IMAGE_STD)
            loops = common.trainer_loops(strategy, train_model, batch_size, 0.01,
                                         jit_compile=False)
        dataset = tf.data.Dataset.from_tensors((images, labels)).repeat()
        iterator = iter(strategy.experimental_distribute_dataset(dataset))
        functions[path] = lambda l=loops, i=iterator: l.train(i, 1)
    return {path: functions[path] for path in FLAGS.paths}


def _table(line):
    rows = [f"{line['config']} batch {line['batch_size']} {line['precision']} {line['path']}: "
            f"{line['wall_s']:.4f} s per call, convolution share of op time "
            f"{100 * line['convolution_share']:.1f} %"]
    for category, seconds in line["seconds"].items():
        share = line["shares"].get(category)
        rows.append(f"  {category:26s} {seconds:9.4f} s" +
                    ("" if share is None else f"  {100 * share:5.1f} %"))
    return "\n".join(rows)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    _validate()
    pairs = common.config_batch_pairs(FLAGS.configs, FLAGS.batch_sizes)
    common.configure_threads(FLAGS.threads)
    from irevnet_tf.benchmarking import op_profile

    machine = common.machine_description()
    for name, batch_size in pairs:
        for precision in FLAGS.precisions:
            for path, function in _functions(name, batch_size, precision).items():
                wall, _ = common.time_call(function, FLAGS.repeats)
                records = op_profile.profile_ops(function, calls=FLAGS.profile_calls)
                seconds = op_profile.breakdown(records, wall_seconds=wall)
                op_total = sum(v for k, v in seconds.items() if k != "overhead")
                line = {
                    "config": name, "batch_size": batch_size, "precision": precision,
                    "path": path, "wall_s": round(wall, 5),
                    "seconds": {k: round(v, 5) for k, v in seconds.items()},
                    "shares": {k: round(v / op_total, 4) for k, v in seconds.items()
                               if k != "overhead"},
                    "convolution_share": round(seconds["convolution"] / op_total, 4),
                    "top_other": [[t, round(s, 5)] for t, s in op_profile.top_other(records)],
                    "machine": machine,
                }
                print(json.dumps(line), flush=True)
                print(_table(line), file=sys.stderr, flush=True)


if __name__ == "__main__":
    app.run(main)
