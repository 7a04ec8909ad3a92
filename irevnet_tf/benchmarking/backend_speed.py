"""Speed of one model on each Keras backend (for benchmarks/backend_speed.py).

`measure(...)` runs inside a process whose Keras backend is already chosen (`KERAS_BACKEND`)
and times, on one configuration, batch and dtype policy:

- `encode`: `model.encode(x)` called eagerly, as users call it (a `tf.function` on TensorFlow,
  `jax.jit` with checkify on JAX, eager under `torch.no_grad()` on PyTorch: see
  `irevnet_tf.backends`);
- `decode`: `model.decode(phi)` likewise;
- `plain_train_step`: `model.train_on_batch(x, y)` of a model built with `reversible=False`
  (plain autodiff), compiled with `model.compile(SGD(0.01), sparse cross-entropy on logits)`:
  Keras' own `train_step` on every backend, as `fit` runs it per batch, compiled as
  `TRAIN_STEP_COMPILATION` says;
- `reversible_train_step`: the same with `reversible=True` (the memory-saving gradient), on
  the backends that have one (`irevnet_tf/backends/<backend>_gradient.py`).

Each path: `warmup` calls (tracing, compilation), then `repeats` timed calls; the medians of
wall-clock and process CPU seconds per call (the CPU time of all the process's threads, so a
shared machine's load stretches it less than the wall clock). Every call ends by copying its
result to NumPy, which waits for JAX's asynchronous dispatch.

`summarize(lines)` turns the JSON lines of several rounds into medians and speed ratios to a
reference backend (per round, then their median), and `table(rows)` renders them.
"""

import importlib.util
import os
import statistics
import time

BACKENDS = ("tensorflow", "jax", "torch")
PATHS = ("encode", "decode", "plain_train_step", "reversible_train_step")
TRAIN_PATHS = {"plain_train_step": False, "reversible_train_step": True}
# What `model.train_on_batch` runs on each backend here (Keras' `jit_compile`): TensorFlow a
# `tf.function` graph without XLA (TensorFlow's fused CPU kernels and graph assertions, as the
# trainer's loop on CPUs), JAX `jax.jit` (Keras' only compiled JAX step), PyTorch eagerly.
TRAIN_STEP_COMPILATION = {
    "tensorflow": (False, "train_on_batch, tf.function without XLA"),
    "jax": (True, "train_on_batch, jax.jit"),
    "torch": (False, "train_on_batch, eager"),
}


def has_memory_saving_gradient(backend):
    """Whether `irevnet_tf/backends/<backend>_gradient.py` exists (without importing the
    package, so the caller's process need not load Keras or any backend)."""
    spec = importlib.util.find_spec("irevnet_tf")
    if spec is None or not spec.submodule_search_locations:
        return False
    return any(os.path.isfile(os.path.join(location, "backends", f"{backend}_gradient.py"))
               for location in spec.submodule_search_locations)


def configure_threads(backend, threads):
    """Intra-op threads of the backend (before it computes anything); one inter-op thread.
    JAX keeps XLA's CPU default (one thread per core)."""
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    elif backend == "torch":
        import torch

        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # Already set, or parallel work has started.
            pass


def backend_version(backend):
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend]
    return __import__(module).__version__


def test_batch(height, width, channels, batch_size, seed=0):
    """`batch_size` smooth random fields at ImageNet-normalised scale (float32 NumPy; a
    coarse field repeated 8x8 plus fine noise), and zero labels, without any backend."""
    import numpy as np

    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((batch_size, -(-height // 8), -(-width // 8), channels))
    images = np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2)[:, :height, :width]
    images = images + 0.3 * rng.standard_normal(images.shape)
    return images.astype(np.float32), np.zeros([batch_size], np.int32)


def time_call(function, repeats, warmup=2):
    """Medians of wall-clock and process CPU seconds per call, after `warmup` calls; each
    call's result is copied to NumPy (which waits for asynchronous backends)."""
    from keras import ops

    def run():
        result = function()
        return result if isinstance(result, float) else ops.convert_to_numpy(result)

    for _ in range(warmup):
        run()
    wall, cpu = [], []
    for _ in range(repeats):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        run()
        wall.append(time.perf_counter() - start_wall)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def measure(config_name, batch_size, precision="float32", paths=PATHS, repeats=3, warmup=2,
            seed=0):
    """Times `paths` on this process's Keras backend; a JSON-able dict.

    `"<path>_wall_s"` / `"<path>_cpu_s"` per path measured, `"<path>_skipped"` (why) for a
    reversible step without the backend's gradient module, `"<path>_error"` for a path that
    raised (the others are still measured).
    """
    import keras

    import irevnet_tf
    from irevnet_tf import backends

    backend = backends.name()
    jit_compile, step = TRAIN_STEP_COMPILATION[backend]
    result = {"backend": backend, "backend_version": backend_version(backend),
              "keras": keras.__version__, "config": config_name, "batch_size": batch_size,
              "precision": precision, "train_step": step}
    config = irevnet_tf.get_config(config_name)
    images, labels = test_batch(*config["input_shape"], batch_size, seed=seed)
    images, labels = keras.ops.convert_to_tensor(images), keras.ops.convert_to_tensor(labels)

    def build(reversible):
        keras.utils.set_random_seed(seed)
        return irevnet_tf.build_irevnet(config_name, reversible=reversible).with_dtype_policy(
            precision)

    functions = {}
    if "encode" in paths or "decode" in paths:
        model = build(reversible=True)
        phi = model.encode(images)
        functions["encode"] = lambda: model.encode(images)
        functions["decode"] = lambda: model.decode(phi)
    for path, reversible in TRAIN_PATHS.items():
        if path not in paths:
            continue
        if reversible and not has_memory_saving_gradient(backend):
            result[f"{path}_skipped"] = f"no irevnet_tf/backends/{backend}_gradient.py"
            continue
        functions[path] = _train_on_batch(build(reversible), images, labels, jit_compile)
    for path in paths:
        if path not in functions:
            continue
        try:
            result[f"{path}_wall_s"], result[f"{path}_cpu_s"] = time_call(
                functions[path], repeats, warmup)
        except Exception as error:  # pylint: disable=broad-except
            result[f"{path}_error"] = f"{type(error).__name__}: {str(error)[:300]}"
    return result


def _train_on_batch(model, images, labels, jit_compile):
    import keras

    model.compile(optimizer=keras.optimizers.SGD(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=jit_compile)
    return lambda: float(model.train_on_batch(images, labels))


def summarize(lines, reference="tensorflow"):
    """Rows `{config, batch_size, precision, path, backend, wall_s, cpu_s,
    speed_over_<reference>_{wall,cpu}, ratios_{wall,cpu}, note}` from `measure`'s lines of
    several rounds (each line has a `"round"`).

    Speed ratio = reference seconds / backend seconds in the same round (> 1: faster than the
    reference), then the median over rounds; None where either side has no time.
    """
    by_key = {}
    for line in lines:
        key = (line["config"], line["batch_size"], line["precision"])
        by_key.setdefault(key, {}).setdefault(line["backend"], {})[line["round"]] = line
    rows = []
    for (config, batch, precision), backends in by_key.items():
        paths = [p for p in PATHS if any(
            f"{p}_wall_s" in line or f"{p}_skipped" in line or f"{p}_error" in line
            for rounds in backends.values() for line in rounds.values())]
        for path in paths:
            for backend in [b for b in BACKENDS if b in backends] + sorted(
                    set(backends) - set(BACKENDS)):
                rounds = backends[backend]
                row = {"config": config, "batch_size": batch, "precision": precision,
                       "path": path, "backend": backend, "note": ""}
                for line in rounds.values():
                    row["note"] = (line.get(f"{path}_skipped") or line.get(f"{path}_error")
                                   or row["note"])
                    row.setdefault("train_step", line.get("train_step"))
                for clock in ("wall", "cpu"):
                    times = [line[f"{path}_{clock}_s"] for line in rounds.values()
                             if f"{path}_{clock}_s" in line]
                    row[f"{clock}_s"] = round(statistics.median(times), 4) if times else None
                    ratios = []
                    for number, line in sorted(rounds.items()):
                        base = backends.get(reference, {}).get(number, {})
                        if f"{path}_{clock}_s" in line and f"{path}_{clock}_s" in base:
                            ratios.append(base[f"{path}_{clock}_s"] / line[f"{path}_{clock}_s"])
                    row[f"ratios_{clock}"] = [round(r, 3) for r in ratios]
                    row[f"speed_over_{reference}_{clock}"] = (
                        round(statistics.median(ratios), 3) if ratios else None)
                rows.append(row)
    return rows


def table(rows, reference="tensorflow"):
    """A Markdown table of `summarize`'s rows: seconds per call and speed over `reference`."""
    header = ("| config, batch, precision | path | backend | s/call (wall) | s/call (CPU) | "
              f"speed over {reference} (wall) | (CPU) | per round (CPU) |")
    lines = [header, "|" + "---|" * 8]

    def number(value, suffix=""):
        return "-" if value is None else f"{value:g}{suffix}"

    for row in rows:
        if row["wall_s"] is None:
            lines.append(f"| {row['config']}, {row['batch_size']}, {row['precision']} | "
                         f"{row['path']} | {row['backend']} | {row['note'] or '-'} | | | | |")
            continue
        lines.append(
            f"| {row['config']}, {row['batch_size']}, {row['precision']} | {row['path']} | "
            f"{row['backend']} | {number(row['wall_s'])} | {number(row['cpu_s'])} | "
            f"{number(row[f'speed_over_{reference}_wall'], 'x')} | "
            f"{number(row[f'speed_over_{reference}_cpu'], 'x')} | "
            f"{', '.join(f'{r:g}' for r in row['ratios_cpu'])} |")
    return "\n".join(lines)
