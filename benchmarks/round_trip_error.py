"""The float32 round-trip error of decode(encode(x)), split into its sources.

    python -m benchmarks.round_trip_error                   # irevnet301 (batch 4), irevnet_cifar (16)
    TF_ENABLE_ONEDNN_OPTS=0 python -m benchmarks.round_trip_error   # Eigen's convolutions

Calibrates the batch norms as benchmarks/forward.py does, then compares with a float64 copy
of the model (irevnet_tf/benchmarking/round_trip.py): the four round trips (float32 /
float64 encode x float32 / float64 decode, Phi stored in float32) and float64 throughout, the
smallest moving variance of the batch norms (how close one is to collapse), each block's
float32 inversion error from its exact output in units of float32 rounding, and the float32
rounding of each block's F (its convolutions) against float64. Prints one JSON line per
configuration.
"""

import os
import statistics

from absl import app, flags

from benchmarks import common

FLAGS = flags.FLAGS
common.define_config_flags(batch_sizes=["4", "16"])
flags.DEFINE_integer("threads", 2, "Intra-op threads.")
common.define_calibration_flag()
# `--help` lists this script's key flags: also the ones defined in common.
flags.adopt_module_key_flags(common)


def measure(name, batch_size):
    from irevnet_tf.benchmarking import round_trip

    model, images = common.calibrated_model(name, batch_size, FLAGS.calibration_steps,
                                           FLAGS.seed)
    twin = round_trip.float64_copy(model)
    result = {"config": name, "batch_size": batch_size,
              "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != "0"}
    result.update(round_trip.round_trip_budget(model, images, twin))
    result["smallest_moving_variance"] = round_trip.smallest_moving_variance(model)
    blocks = round_trip.block_figures(model, images, twin)
    for key in ("inversion_error_units", "f_relative_rms_error", "f_relative_max_error"):
        values = [block[key] for block in blocks]
        result[f"block_{key}_median"] = statistics.median(values)
        result[f"block_{key}_max"] = max(values)
    return result


def main(argv):
    del argv
    common.print_measurements(measure, FLAGS.configs, FLAGS.batch_sizes, FLAGS.threads)


if __name__ == "__main__":
    app.run(main)
