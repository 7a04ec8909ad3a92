"""Exactness at full depth: decode(encode(x)) against x, bit for bit, and the range the stream uses.

    python -m benchmarks.round_trip_error                          # irevnet301 (8), irevnet_cifar (64)
    python -m benchmarks.round_trip_error --precision=mixed_bfloat16 --calibration_steps=60
    TF_ENABLE_ONEDNN_OPTS=0 python -m benchmarks.round_trip_error  # Eigen's convolutions

Calibrates the batch norms as benchmarks/forward.py does (`--calibration_steps` training-mode
passes, weights from `--seed`), copies the model to `--precision`, then reports
(irevnet_tf/benchmarking/round_trip.py): whether decode(encode(x)) equals x's grid points bit
for bit and how many values differ, the error against x itself (the input's quantisation),
whether encoding or decoding one image at a time gives the batch's bits, the largest |value|
in the stream against the format's range, and the smallest batch-norm variance. One JSON
line per configuration.
"""

import os

from absl import app, flags

from benchmarks import common

FLAGS = flags.FLAGS
common.define_config_flags()
flags.DEFINE_integer("threads", 2, "Intra-op threads.")
common.define_calibration_flag()
# `--help` lists this script's key flags: also the ones defined in common.
flags.adopt_module_key_flags(common)


def measure(name, batch_size):
    from irevnet_tf.benchmarking import round_trip

    model, images = common.calibrated_model(name, batch_size, FLAGS.calibration_steps,
                                           FLAGS.seed, FLAGS.precision)
    result = {"config": name, "batch_size": batch_size, "precision": FLAGS.precision,
              "calibration_steps": FLAGS.calibration_steps, "seed": FLAGS.seed,
              "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != "0"}
    result.update(round_trip.exactness_report(model, images))
    return result


def main(argv):
    del argv
    common.print_measurements(measure, FLAGS.configs, FLAGS.batch_sizes, FLAGS.threads)


if __name__ == "__main__":
    app.run(main)
