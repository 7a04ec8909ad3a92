"""Speed of encode, decode and a training step on each Keras backend, measured alternately.

    python -m benchmarks.backend_speed                      # irevnet_cifar, batch 16, float32
    python -m benchmarks.backend_speed --precision=mixed_bfloat16 --rounds=3 --repeats=3

Each round runs one fresh process per backend (`KERAS_BACKEND=tensorflow|jax|torch`), the
backends in a rotated order each round (TF JAX Torch, JAX Torch TF, ...), so that a shared
machine's load falls on every backend alike. A process builds the configuration with seeded
weights under the dtype policy and times (`irevnet_tf.benchmarking.backend_speed.measure`):
`model.encode(x)` and `model.decode(phi)` called eagerly as users call them, and
`model.train_on_batch(x, y)` (Keras' own `train_step`: a `tf.function` without XLA on
TensorFlow, `jax.jit` on JAX, eager on PyTorch) with plain autodiff (`reversible=False`) and,
where `irevnet_tf/backends/<backend>_gradient.py` exists, with the memory-saving gradient
(`reversible=True`). Medians of --repeats calls after --warmup calls, wall-clock and process
CPU seconds.

Output: one JSON line per configuration, path and backend (medians over rounds, and the
speed over TensorFlow: TensorFlow's seconds over the backend's in the same round, then the
median of the rounds), then a Markdown table and the machine, on stdout.
"""

import json
import os
import subprocess
import sys

from absl import app, flags

from irevnet_tf.benchmarking import backend_speed

FLAGS = flags.FLAGS
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_list("backends", list(backend_speed.BACKENDS), "Keras backends to measure.")
flags.DEFINE_list("configs", ["irevnet_cifar"], "Named configurations.")
flags.DEFINE_list("batch_sizes", ["16"], "Batch size per configuration (same order).")
flags.DEFINE_enum("precision", "float32", ["float32", "mixed_bfloat16", "mixed_float16"],
                  "Dtype policy of every backend's model.")
flags.DEFINE_multi_enum("paths", list(backend_speed.PATHS), backend_speed.PATHS,
                        "What to time: encode, decode, plain_train_step (reversible=False), "
                        "reversible_train_step (where the backend has the memory-saving "
                        "gradient).")
flags.DEFINE_integer("rounds", 3, "Rounds (one process per backend per round).")
flags.DEFINE_integer("repeats", 3, "Timed calls per path and process.")
flags.DEFINE_integer("warmup", 2, "Untimed calls first (tracing and compilation).")
flags.DEFINE_integer("threads", 2, "Intra-op threads (TensorFlow, PyTorch; JAX: XLA's default).")
flags.DEFINE_string("output", None, "Also write every process's lines and the summary here "
                    "(JSON).")
flags.DEFINE_string("worker_backend", None, "Internal: measure in this process.")


def _worker():
    from benchmarks import common

    backend_speed.configure_threads(FLAGS.worker_backend, FLAGS.threads)
    for name, batch in common.config_batch_pairs(FLAGS.configs, FLAGS.batch_sizes):
        result = backend_speed.measure(name, batch, FLAGS.precision, FLAGS.paths,
                                       FLAGS.repeats, FLAGS.warmup)
        print(json.dumps(result), flush=True)


def _run_backend(backend):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2",
               CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (HERE, os.environ.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "benchmarks.backend_speed", f"--worker_backend={backend}",
               f"--configs={','.join(FLAGS.configs)}",
               f"--batch_sizes={','.join(FLAGS.batch_sizes)}", f"--precision={FLAGS.precision}",
               f"--repeats={FLAGS.repeats}", f"--warmup={FLAGS.warmup}",
               f"--threads={FLAGS.threads}"] + [f"--paths={path}" for path in FLAGS.paths]
    completed = subprocess.run(command, cwd=HERE, env=env, capture_output=True, text=True,
                               check=False)
    if completed.returncode:
        raise RuntimeError(f"measuring on {backend} failed:\n{completed.stderr[-3000:]}")
    results = [json.loads(line) for line in completed.stdout.splitlines()
               if line.startswith("{")]
    for result in results:
        if result["backend"] != backend:
            raise RuntimeError(f"the process for {backend} ran on {result['backend']}")
    return results


def main(argv):
    del argv
    unknown = sorted(set(FLAGS.backends) - set(backend_speed.BACKENDS))
    if unknown or not FLAGS.backends:
        raise app.UsageError(f"--backends accepts {', '.join(backend_speed.BACKENDS)}; got "
                             f"{', '.join(FLAGS.backends) or 'nothing'}.")
    if len(FLAGS.batch_sizes) != len(FLAGS.configs):
        raise app.UsageError("--batch_sizes needs one entry per --configs entry.")
    if FLAGS.worker_backend:
        _worker()
        return
    from irevnet_tf import machine

    lines = []
    order = list(FLAGS.backends)
    for number in range(FLAGS.rounds):
        rotation = order[number % len(order):] + order[:number % len(order)]
        for backend in rotation:
            for result in _run_backend(backend):
                lines.append({**result, "round": number})
                # Progress on stderr: a long run's processes one by one, as they finish.
                print(json.dumps(lines[-1]), file=sys.stderr, flush=True)
    reference = "tensorflow" if "tensorflow" in FLAGS.backends else FLAGS.backends[0]
    rows = backend_speed.summarize(lines, reference=reference)
    described = {**machine.describe(), "cpu_count": os.cpu_count(),
                 "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()]}
    for row in rows:
        print(json.dumps({**row, "machine": described}), flush=True)
    versions = {line["backend"]: line["backend_version"] for line in lines}
    print()
    print(backend_speed.table(rows, reference=reference))
    print()
    print(f"Backends: {json.dumps(versions)}; keras {lines[0]['keras'] if lines else '?'}; "
          f"training step: "
          + "; ".join(f"{b}: {backend_speed.TRAIN_STEP_COMPILATION[b][1]}" for b in order))
    print(f"Machine: {json.dumps(described)}")
    if FLAGS.output:
        with open(FLAGS.output, "w", encoding="utf-8") as handle:
            json.dump({"lines": lines, "summary": rows, "machine": described,
                       "argv": sys.argv}, handle, indent=1)


if __name__ == "__main__":
    app.run(main)
