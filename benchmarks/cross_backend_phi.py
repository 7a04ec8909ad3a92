"""Does a Phi encoded on one Keras backend decode exactly on another? Counts what moves.

    python -m benchmarks.cross_backend_phi                      # irevnet_small, irevnet_cifar
    python -m benchmarks.cross_backend_phi --configs=irevnet_tiny --batch_size=2 \
        --precisions=float32 --calibration_steps=2              # seconds: the test's run

Each backend (`--backends`, TensorFlow first) runs in a child process of its own, since
Keras reads `KERAS_BACKEND` once per process. The TensorFlow child calibrates each
configuration's batch norms (`benchmarks.common.calibrated_model`, float32) and saves it as
a `.keras` file beside the natural test images, in `--out_dir` (default: a temporary
directory, removed at the end unless `--keep`). Every child then loads the same file, copies
it to each of `--precisions`, encodes the images and writes its Phis as
`phi.<config>.<precision>.<backend>.npy`; once every backend has encoded, every child decodes
every backend's Phis (`decoded.<config>.<precision>.<encoder>.by.<decoder>.npy`).

The parent counts, in numpy, (1) the image grid points that a decode gets wrong, against
the grid points `round(x * 2**k)` of the images themselves (the models take normalised
images: no normalisation between the grid and the pixels), and (2) the Phi values on
which two backends' encoders disagree. It prints both tables and each child's machine
record (`irevnet_tf.machine.describe()`); `--json_out` writes them as JSON. The decode
table also gives the largest miss in grid steps (2**-k of the normalised image; in pixels,
times the dataset's std: 60 for the test images).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_list("configs", ["irevnet_small", "irevnet_cifar"], "Named configurations.")
flags.DEFINE_list("precisions", ["float32", "mixed_bfloat16"], "Dtype policies.")
flags.DEFINE_list("backends", ["tensorflow", "jax", "torch"], "Keras backends (TensorFlow "
                  "first: its child calibrates the models).")
flags.DEFINE_integer("batch_size", 8, "Images per Phi.")
flags.DEFINE_integer("calibration_steps", 10, "Training-mode passes that set BN statistics.")
flags.DEFINE_integer("seed", 0, "Seed of the models' random weights.")
flags.DEFINE_string("out_dir", None, "Where the .keras files and .npy Phis go (default: a "
                    "temporary directory).")
flags.DEFINE_boolean("keep", False, "Keep the temporary directory.")
flags.DEFINE_string("json_out", None, "Also write the results as JSON here.")
flags.DEFINE_boolean("recount", False, "Count again from the files in --out_dir (written by "
                     "an earlier run with the same flags) without running the backends.")
flags.DEFINE_string("child", None, "Internal: run as the child of this backend.")
flags.DEFINE_boolean("prepare", False, "Internal: the child calibrates and saves the models.")

FRACTION_BITS_FILE = "fraction_bits.json"


def _model_path(directory, config):
    return os.path.join(directory, f"{config}.keras")


def _phi_path(directory, config, precision, backend):
    return os.path.join(directory, f"phi.{config}.{precision}.{backend}.npy")


def _decoded_path(directory, config, precision, encoder, decoder):
    return os.path.join(directory, f"decoded.{config}.{precision}.{encoder}.by.{decoder}.npy")


# --- the child: one backend -------------------------------------------------------------

def _prepare(directory):
    from benchmarks import common
    from irevnet_tf import model_files

    bits = {}
    for config in FLAGS.configs:
        model, images = common.calibrated_model(config, FLAGS.batch_size,
                                               FLAGS.calibration_steps, FLAGS.seed)
        run_config = model_files.RunConfig(config_name=config, dataset="natural test images",
                                           image_size=model.image_shape[0],
                                           num_classes=model.num_classes, mean=(0.0,),
                                           std=(1.0,))
        model_files.save_keras_model(model, run_config, _model_path(directory, config))
        np.save(os.path.join(directory, f"images.{config}.npy"), images)
        bits[config] = model.grid.fraction_bits
    with open(os.path.join(directory, FRACTION_BITS_FILE), "w", encoding="utf-8") as handle:
        json.dump(bits, handle)


def _models(directory):
    import keras

    import irevnet_tf  # noqa: F401  (registers IRevNet with Keras)

    for config in FLAGS.configs:
        model = keras.saving.load_model(_model_path(directory, config))
        for precision in FLAGS.precisions:
            yield config, precision, model.with_dtype_policy(precision)


def _encode(directory, backend):
    from keras import ops

    for config, precision, model in _models(directory):
        images = np.load(os.path.join(directory, f"images.{config}.npy"))
        phi = ops.convert_to_numpy(model.encode(images))
        np.save(_phi_path(directory, config, precision, backend), phi)


def _decode(directory, backend):
    from keras import ops

    from irevnet_tf.layers.fixed_point import StreamRangeError

    for config, precision, model in _models(directory):
        for encoder in FLAGS.backends:
            phi = np.load(_phi_path(directory, config, precision, encoder))
            try:
                decoded = ops.convert_to_numpy(model.decode(phi))
            except StreamRangeError as error:  # A foreign Phi may leave the stream's range.
                decoded = np.full(phi.shape[:1], np.nan)
                print(f"{config} {precision}: {encoder}'s Phi on {backend}: {error}",
                      file=sys.stderr)
            np.save(_decoded_path(directory, config, precision, encoder, backend), decoded)


def _child(directory, backend):
    from irevnet_tf import machine

    if FLAGS.prepare:
        _prepare(directory)
    with open(os.path.join(directory, f"machine.{backend}.json"), "w",
              encoding="utf-8") as handle:
        json.dump(machine.describe(), handle)
    _encode(directory, backend)
    print("encoded", flush=True)
    sys.stdin.readline()  # The parent's go: every backend has encoded.
    _decode(directory, backend)
    print("decoded", flush=True)


# --- the parent: children and counting ---------------------------------------------------

def _flag_arguments():
    return [f"--configs={','.join(FLAGS.configs)}",
            f"--precisions={','.join(FLAGS.precisions)}",
            f"--backends={','.join(FLAGS.backends)}", f"--batch_size={FLAGS.batch_size}",
            f"--calibration_steps={FLAGS.calibration_steps}", f"--seed={FLAGS.seed}"]


def run_children(directory):
    """Runs one child per backend, one at a time: all encode, then all decode."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    children = {}

    def failed(backend, step):
        with open(os.path.join(directory, f"stderr.{backend}.txt"), encoding="utf-8",
                  errors="replace") as handle:
            return RuntimeError(f"{step} on {backend} failed:\n{handle.read()[-4000:]}")

    try:
        for index, backend in enumerate(FLAGS.backends):
            env = dict(os.environ, KERAS_BACKEND=backend,
                       PYTHONPATH=os.pathsep.join(
                           p for p in (root, os.environ.get("PYTHONPATH")) if p))
            command = [sys.executable, "-m", "benchmarks.cross_backend_phi",
                       f"--child={directory}", *_flag_arguments()]
            if index == 0:
                command.append("--prepare")
            children[backend] = subprocess.Popen(
                command, env=env, cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=open(os.path.join(directory, f"stderr.{backend}.txt"), "w",
                            encoding="utf-8"), text=True)
            if not any(line.strip() == "encoded"
                       for line in iter(children[backend].stdout.readline, "")):
                raise failed(backend, "encode")
        for backend, child in children.items():
            output, _ = child.communicate("decode\n")
            if child.returncode != 0 or "decoded" not in output.split():
                raise failed(backend, "decode")
    finally:
        for child in children.values():
            if child.poll() is None:
                child.kill()
                child.communicate()


def count(directory, configs, precisions, backends):
    """The measurements, from the files the children wrote (numpy only)."""
    with open(os.path.join(directory, FRACTION_BITS_FILE), encoding="utf-8") as handle:
        bits = json.load(handle)
    results = {"decode": [], "phi": [], "machines": {}}
    for backend in backends:
        with open(os.path.join(directory, f"machine.{backend}.json"), encoding="utf-8") as handle:
            results["machines"][backend] = json.load(handle)
    for config in configs:
        scale = 2.0 ** bits[config]
        images = np.load(os.path.join(directory, f"images.{config}.npy")).astype(np.float64)
        grid = np.round(images * scale)  # The images' own grid points.
        for precision in precisions:
            phis = {b: np.load(_phi_path(directory, config, precision, b)) for b in backends}
            for i, first in enumerate(backends):
                for second in backends[i + 1:]:
                    results["phi"].append({
                        "config": config, "precision": precision, "backends": [first, second],
                        "differing": int(np.sum(phis[first] != phis[second])),
                        "total": int(phis[first].size)})
            for encoder in backends:
                for decoder in backends:
                    decoded = np.load(_decoded_path(directory, config, precision, encoder,
                                                    decoder)).astype(np.float64)
                    raised = decoded.shape != grid.shape
                    error = None if raised else np.abs(np.round(decoded * scale) - grid)
                    results["decode"].append({
                        "config": config, "precision": precision, "encoder": encoder,
                        "decoder": decoder, "total": int(grid.size), "raised": raised,
                        "differing": grid.size if raised else int(np.sum(error != 0)),
                        # The largest miss, in grid steps (2**-k of the normalised image).
                        "max_steps": None if raised else int(error.max())})
    return results


def _cell(entry):
    if entry.get("raised"):
        return "StreamRangeError"
    if not entry["differing"]:
        return "0"
    text = f"{entry['differing']:,} ({100.0 * entry['differing'] / entry['total']:.1f}%)"
    if entry.get("max_steps"):
        text += f", <= {entry['max_steps']:,} steps"
    return text


def table(results, backends):
    """Markdown tables: decode's differing image grid points; Phis that differ."""
    lines = ["Image grid points that decode gets wrong (of the batch's), and the largest miss "
             "in grid steps:", "",
             "| config | precision | encoded on | " + " | ".join(
                 f"decoded on {b}" for b in backends) + " |",
             "|---" * (3 + len(backends)) + "|"]
    rows = {}
    for entry in results["decode"]:
        key = (entry["config"], entry["precision"], entry["encoder"])
        rows.setdefault(key, {})[entry["decoder"]] = entry
    for (config, precision, encoder), cells in rows.items():
        total = next(iter(cells.values()))["total"]
        lines.append(f"| {config} ({total:,}) | {precision} | {encoder} | " + " | ".join(
            _cell(cells[b]) for b in backends) + " |")
    lines += ["", "Phi values on which two backends' encoders differ:", "",
              "| config | precision | backends | differing Phi values |", "|---|---|---|---|"]
    for entry in results["phi"]:
        lines.append(f"| {entry['config']} ({entry['total']:,}) | {entry['precision']} | "
                     f"{' vs '.join(entry['backends'])} | {_cell(entry)} |")
    lines += ["", "Machines (irevnet_tf.machine.describe() in each child):"]
    for backend, record in results["machines"].items():
        lines.append(f"  {backend}: {record['backend_version']}, keras backend "
                     f"{record['keras_backend']}, TensorFlow oneDNN {record['onednn']}, "
                     f"{record['cpu']} ({' '.join(record['cpu_flags'])})")
    return "\n".join(lines)


def main(argv):
    del argv
    if FLAGS.child:
        _child(FLAGS.child, os.environ["KERAS_BACKEND"])
        return
    if FLAGS.recount and not FLAGS.out_dir:
        raise app.UsageError("--recount needs --out_dir (the files of an earlier run).")
    if not FLAGS.backends or FLAGS.backends[0] != "tensorflow":
        raise app.UsageError("--backends must start with tensorflow (it calibrates the models).")
    directory = FLAGS.out_dir or tempfile.mkdtemp(prefix="cross-backend-phi-")
    os.makedirs(directory, exist_ok=True)
    try:
        if not FLAGS.recount:
            run_children(directory)
        results = count(directory, FLAGS.configs, FLAGS.precisions, FLAGS.backends)
        results["settings"] = {"batch_size": FLAGS.batch_size, "seed": FLAGS.seed,
                               "calibration_steps": FLAGS.calibration_steps}
        print(table(results, FLAGS.backends))
        if FLAGS.json_out:
            with open(FLAGS.json_out, "w", encoding="utf-8") as handle:
                json.dump(results, handle, indent=2)
    finally:
        if not FLAGS.out_dir and not FLAGS.keep:
            shutil.rmtree(directory, ignore_errors=True)
        elif not FLAGS.out_dir:
            print(f"Files kept in {directory}")


if __name__ == "__main__":
    app.run(main)
