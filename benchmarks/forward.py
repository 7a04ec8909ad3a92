"""Inference speed of encode / decode / call and the float32 round-trip error at full depth.

    python benchmarks/forward.py                      # irevnet301 (batch 8), irevnet_cifar (batch 64)
    python benchmarks/forward.py --configs=irevnet_small --batch_sizes=64 --repeats=3

Speed: images/s through the public paths users take: `model.encode(x)` and `model.decode(phi)`
called eagerly (they run compiled graphs inside), `model(x)`, and `model.predict`-style
tf.function of `call`; medians of `--repeats` timed calls after warm-up, 2 intra-op threads.
Error: max|decode(encode(x)) - x| / max|x| on normalised natural images, after the batch
norms have been given non-trivial statistics by `--calibration_steps` training-mode passes
over other natural images (a fresh model's batch norms are the identity).
"""


from absl import app, flags

from benchmarks import common

FLAGS = flags.FLAGS
common.define_config_flags()
flags.DEFINE_integer("repeats", 7, "Timed calls per measurement (the median is reported).")
flags.DEFINE_integer("threads", 2, "Intra-op threads.")
common.define_calibration_flag()
# `--help` lists this script's key flags: also the ones defined in common.
flags.adopt_module_key_flags(common)
flags.DEFINE_bool("jit_compile", False, "Compile with XLA (slower on this CPU; TPUs need it).")


def measure(name, batch_size):
    import tensorflow as tf

    model, images = common.calibrated_model(name, batch_size, FLAGS.calibration_steps,
                                           FLAGS.seed)
    images = tf.constant(images)

    phi = model.encode(images)
    restored = model.decode(phi)
    error = float(tf.reduce_max(tf.abs(restored - images)) / tf.reduce_max(tf.abs(images)))
    results = {"config": name, "batch_size": batch_size, "round_trip_max_rel_error": error}
    call = tf.function(lambda x: model(x, training=False), jit_compile=FLAGS.jit_compile)
    paths = {"encode": lambda: model.encode(images), "decode": lambda: model.decode(phi),
             "call_tf_function": lambda: call(images)}
    for path, function in paths.items():
        median, samples = common.time_call(function, FLAGS.repeats)
        results[f"{path}_images_per_s"] = batch_size / median
        results[f"{path}_samples_s"] = [round(s, 4) for s in samples]
    results["decode_over_encode_time"] = (
        results["encode_images_per_s"] / results["decode_images_per_s"])
    return results


def main(argv):
    del argv
    common.print_measurements(measure, FLAGS.configs, FLAGS.batch_sizes, FLAGS.threads)


if __name__ == "__main__":
    app.run(main)
