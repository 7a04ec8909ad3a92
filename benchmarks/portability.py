"""Where the exact round trip holds: encode in one setting, decode in another, compare bits.

    python -m benchmarks.portability                         # irevnet_cifar, batch 64
    python -m benchmarks.portability --config=irevnet301 --batch_size=8 --precision=mixed_bfloat16

Bit-exactness needs F to give the same bits in decode as in encode. Within one process and
one batch that holds by construction; this script measures the rest. Each setting runs in
its own process (TensorFlow reads TF_ENABLE_ONEDNN_OPTS once, at start-up): the model is
built from `--seed` and calibrated with `--calibration_steps` passes the same way in each,
Phi is written by the encoding process and read by the decoding one. Settings:

    default      oneDNN on (TensorFlow's default on x86), graph functions, whole batch
    onednn_off   TF_ENABLE_ONEDNN_OPTS=0: Eigen's kernels
    xla          encode/decode compiled with XLA (jit_compile=True), as on TPUs
    one_by_one   the same process type as default, but one image per call
    chunked      the model built with inference_chunk=1 (one kernel shape for any batch),
                 decoding one image per call

Prints one JSON line per (encode setting, decode setting): the number of values of
decode(encode(x)) that differ from x's grid points, and the largest difference relative to
max|x|.
"""

import json
import os
import subprocess
import sys
import tempfile

from absl import app, flags

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FLAGS = flags.FLAGS
flags.DEFINE_string("config", "irevnet_cifar", "Named configuration.")
flags.DEFINE_integer("batch_size", 64, "Images encoded together.")
flags.DEFINE_integer("calibration_steps", 10, "Training-mode passes that set BN statistics.")
flags.DEFINE_integer("seed", 0, "Seed of the model's random weights.")
flags.DEFINE_enum("precision", "float32", ["float32", "mixed_bfloat16"], "Dtype policy.")
flags.DEFINE_list("pairs", ["default:default", "default:one_by_one", "chunked:chunked",
                            "default:onednn_off", "default:xla", "xla:xla"],
                  "encode_setting:decode_setting pairs to measure.")

SETTINGS = ("default", "onednn_off", "xla", "one_by_one", "chunked")

# Runs in a subprocess: argv = role, setting, config, batch, steps, seed, precision, file.
_WORKER = r"""
import sys
import numpy as np
role, setting, name, batch, steps, seed, precision, path = sys.argv[1:]
batch, steps, seed = int(batch), int(steps), int(seed)
import tensorflow as tf
sys.path.insert(0, ROOT)
from benchmarks import common
common.configure_threads(2)
model, images = common.calibrated_model(name, batch, steps, seed, precision)
if setting == "chunked":
    chunked = type(model).from_config({**model.get_config(), "inference_chunk": 1})
    chunked.set_weights(model.get_weights())
    model = chunked
def run(direction, tensor):
    if setting == "xla":
        function = model._encode_inference if direction == "encode" else model._decode_inference
        return tf.function(function, jit_compile=True)(tensor)
    call = model.encode if direction == "encode" else model.decode
    if setting in ("one_by_one", "chunked") and direction == "decode":
        return tf.concat([call(tensor[i:i + 1]) for i in range(int(tensor.shape[0]))], 0)
    return call(tensor)
if role == "encode":
    np.save(path, run("encode", tf.constant(images)).numpy())
else:
    phi = tf.constant(np.load(path))
    restored = run("decode", phi).numpy().astype(np.float64)
    on_grid = model.dequantize(model.grid.quantize(tf.constant(images))).numpy()
    difference = np.abs(restored - on_grid)
    print("RESULT", int(np.sum(difference > 0)), float(difference.max() / np.abs(images).max()))
"""


def _run(role, setting, path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if setting == "onednn_off":
        env["TF_ENABLE_ONEDNN_OPTS"] = "0"
    code = _WORKER.replace("ROOT", repr(_ROOT))
    completed = subprocess.run(
        [sys.executable, "-c", code, role, setting, FLAGS.config, str(FLAGS.batch_size),
         str(FLAGS.calibration_steps), str(FLAGS.seed), FLAGS.precision, path],
        env=env, capture_output=True, text=True, check=False)
    if completed.returncode:
        raise RuntimeError(f"{role} in setting {setting} failed:\n{completed.stderr[-3000:]}")
    return completed.stdout


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    pairs = []
    for pair in FLAGS.pairs:
        parts = pair.split(":")
        if len(parts) != 2 or any(part not in SETTINGS for part in parts):
            raise app.UsageError(f"--pairs entries are encode:decode settings from "
                                 f"{', '.join(SETTINGS)}; got {pair!r}.")
        pairs.append(parts)
    with tempfile.TemporaryDirectory() as directory:
        for encode_setting, decode_setting in pairs:
            path = os.path.join(directory, f"phi_{encode_setting}.npy")
            if not os.path.exists(path):
                _run("encode", encode_setting, path)
            line = [text for text in _run("decode", decode_setting, path).splitlines()
                    if text.startswith("RESULT ")][0].split()
            print(json.dumps({
                "config": FLAGS.config, "batch_size": FLAGS.batch_size,
                "precision": FLAGS.precision, "calibration_steps": FLAGS.calibration_steps,
                "encode": encode_setting, "decode": decode_setting,
                "differing_values": int(line[1]), "max_relative_difference": float(line[2])}),
                flush=True)


if __name__ == "__main__":
    app.run(main)
