"""The memory and time of a training step, reversible or plain (for benchmarks/train_memory.py).

`measure_training_step` builds a named configuration (optionally with every stage
`blocks_multiplier` times deeper, and at another image size), the trainer's MomentumSGD
optimizer with its slots created, and a `tf.function` train step, then reports:

- activation memory from the resident set size: the peak RSS over steady-state steps,
  minus the RSS with the model, the optimizer slots and the traced step function, minus
  one float32 copy of the trainable parameters (the gradients, which any training step
  holds). It still contains what the first run of the function keeps for good (its
  kernels, and oneDNN's allocator pool, which never shrinks; see `measure_training_step`).
- activation memory from TensorFlow's allocator, where it keeps statistics (the process
  was started with TF_CPU_ALLOCATOR_USE_BFC=true): the peak of live tensor bytes during a
  step over those alive before it, minus the gradients. It counts tensors only, exactly.
- both without subtracting the gradients (the step's whole increase): MomentumSGD updates
  each variable as its gradient arrives, so a reversible step may never hold all gradients
  at once and the figures above can be negative.
- step time (median of timed steps after warm-up) and images per second.

`step="gradients"` and `step="forward"` measure parts of the step (gradients without
the optimizer update; the training-mode forward and loss only), to attribute memory.
"""

import gc
import os
import re
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from irevnet_tf import configs, validation
from irevnet_tf.benchmarking import process_memory
from irevnet_tf.model import IRevNet
from irevnet_tf.training.optimizer import MomentumSGD

STEPS = ("train", "gradients", "forward")
PATHS = ("loop", "fit")


def benchmark_model_kwargs(config_name, image_size=None, blocks_multiplier=1, reversible=True,
                           num_classes=None):
    """IRevNet keyword arguments of `config_name`, deeper and at another size if asked."""
    validation.check_int(blocks_multiplier, "`blocks_multiplier`", 1)
    kwargs = configs.get_config(config_name)
    overrides = {"blocks": tuple(b * blocks_multiplier for b in kwargs["blocks"]),
                 "reversible": bool(reversible)}
    if image_size:
        overrides["input_shape"] = (image_size, image_size, kwargs["input_shape"][-1])
    if num_classes:
        overrides["num_classes"] = num_classes
    return configs.get_config(config_name, **overrides)


def make_train_step(model, optimizer, step="train", jit_compile=False):
    """A `tf.function(images, labels) -> loss` doing `step` ("train", "gradients", "forward")."""
    if step not in STEPS:
        raise ValueError(f"`step` must be one of {STEPS}, got {step!r}.")
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def train_step(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = loss_fn(labels, logits)
        if step == "forward":
            return loss
        variables = model.trainable_variables
        grads = tape.gradient(loss, variables)
        if step == "train":
            optimizer.apply(grads, variables)
            return loss
        # Consume every gradient, or graph pruning would skip computing it.
        return loss + tf.add_n([tf.reduce_sum(tf.cast(g[..., :1], loss.dtype)) * 0.0
                                for g in grads])

    return tf.function(train_step, jit_compile=jit_compile)


class _KerasStep:
    """`model.train_on_batch(images, labels)` as a step: `get_concrete_function` traces
    Keras' own per-step `tf.function` (the one `fit` and `train_on_batch` run) without
    running it; a call runs `train_on_batch` and returns the loss as a tensor."""

    def __init__(self, model, step_function):
        self._model = model
        self._step_function = step_function

    def get_concrete_function(self, images, labels):
        return self._step_function.get_concrete_function((images, labels, None))

    def tracing_count(self):
        return self._step_function.experimental_get_tracing_count()

    def __call__(self, images, labels):
        return tf.constant(self._model.train_on_batch(images, labels))


def _keras_train_step(model, images, labels):
    """Keras' per-step function of a compiled `model`, wrapped as a step (`_KerasStep`)."""
    model._maybe_symbolic_build(data_batch=(images, labels, None))  # pylint: disable=protected-access
    model.make_train_function()
    # Keras keeps its `tf.function` of one step (`one_step_on_data`) in the closure of
    # `model.train_function`; find it there, to trace it before the baseline.
    pending, seen = [model.train_function], set()
    while pending:
        function = pending.pop()
        if id(function) in seen:
            continue
        seen.add(id(function))
        if hasattr(function, "get_concrete_function"):
            return _KerasStep(model, function)
        for cell in getattr(function, "__closure__", None) or ():
            try:
                value = cell.cell_contents
            except ValueError:
                continue
            if callable(value):
                pending.append(value)
    raise RuntimeError("Keras' train function holds no tf.function; does `run_eagerly` hold?")


def parameter_bytes(variables):
    """Bytes of one float32 copy of `variables`."""
    return 4 * sum(int(np.prod(v.shape)) for v in variables)


def measure_training_step(config_name="irevnet301", image_size=None, batch_size=8,
                          blocks_multiplier=1, reversible=True, step="train",
                          jit_compile=False, warmup=2, repeats=5, memory_repeats=2,
                          memory_method="hwm", seed=0, path="loop"):
    """Builds the model and train step and measures them; returns a dict of plain numbers.

    Memory milestones (bytes of RSS, after returning free heap memory to the kernel):
    `rss_model_built_bytes` (model and optimizer slots), `rss_traced_bytes` (plus the traced
    step function), `first_step_peak_bytes` (the first run also optimises the graph and
    creates its kernels), `rss_before_steady_bytes` and `steady_peak_bytes` (the peak over
    `memory_repeats` later steps). `activation_bytes` is
    `steady_peak - rss_traced - gradient_bytes`.

    With oneDNN, TensorFlow's CPU allocator keeps large blocks in a pool that never shrinks,
    so after the first step the RSS stays near the step's peak: a step's own increase over
    the RSS before it (`steady_increase_bytes`) is then about 0 and says nothing; hence the
    baseline before the first run.
    """
    for name, value, low in (("batch_size", batch_size, 1), ("warmup", warmup, 1),
                             ("repeats", repeats, 1), ("memory_repeats", memory_repeats, 1)):
        validation.check_int(value, f"`{name}`", low)
    keras.utils.set_random_seed(seed)
    kwargs = benchmark_model_kwargs(config_name, image_size, blocks_multiplier, reversible)
    rss_start = process_memory.current_rss_bytes()
    model = IRevNet(**kwargs)
    rss_model_only = _settled_rss()
    # The trainer's optimizer: its fused in-place update holds no parameter-sized temporaries.
    optimizer = MomentumSGD(learning_rate=0.01, momentum=0.9, l2_decay=1e-4)
    if path == "fit":
        model.compile(optimizer=optimizer,
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      jit_compile=jit_compile)
    optimizer.build(model.trainable_variables)

    rng = np.random.default_rng(seed)
    height, width, channels = kwargs["input_shape"]
    images = tf.constant(rng.standard_normal((batch_size, height, width, channels),
                                             dtype=np.float32))
    labels = tf.constant(rng.integers(0, kwargs["num_classes"], batch_size), tf.int32)
    if path == "fit":
        train_step = _keras_train_step(model, images, labels)
    else:
        train_step = make_train_step(model, optimizer, step=step, jit_compile=jit_compile)
    rss_model_built = _settled_rss()

    trace_start = time.perf_counter()
    train_step.get_concrete_function(images, labels)
    trace_seconds = time.perf_counter() - trace_start
    rss_traced = _settled_rss()

    with process_memory.measure_peak(memory_method) as first_peak:
        first_start = time.perf_counter()
        train_step(images, labels).numpy()
        first_step_seconds = time.perf_counter() - first_start
    for _ in range(warmup - 1):
        train_step(images, labels).numpy()

    step_seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        train_step(images, labels).numpy()
        step_seconds.append(time.perf_counter() - start)

    with process_memory.measure_peak(memory_method) as steady_peak:
        for _ in range(memory_repeats):
            train_step(images, labels).numpy()

    trainable = model.trainable_variables
    # Only a full step holds every gradient until the update; the "gradients" step reduces
    # each one as soon as it exists.
    gradient_bytes = parameter_bytes(trainable) if step == "train" else 0
    median_seconds = statistics.median(step_seconds)
    result = {
        "config": config_name, "image_size": height, "batch_size": batch_size,
        "blocks": list(kwargs["blocks"]), "blocks_multiplier": blocks_multiplier,
        "reversible": bool(reversible), "step": step, "jit_compile": bool(jit_compile),
        "path": path,
        "trainable_parameters": sum(int(np.prod(v.shape)) for v in trainable),
        "parameter_bytes": parameter_bytes(trainable),
        "trace_seconds": trace_seconds, "first_step_seconds": first_step_seconds,
        "step_seconds": step_seconds, "median_step_seconds": median_seconds,
        "images_per_second": batch_size / median_seconds,
        "memory_method": steady_peak.method,
        "rss_start_bytes": rss_start, "rss_model_only_bytes": rss_model_only,
        "rss_model_built_bytes": rss_model_built,
        "rss_traced_bytes": rss_traced, "first_step_peak_bytes": first_peak.peak_bytes,
        "rss_before_steady_bytes": steady_peak.baseline_bytes,
        "steady_peak_bytes": steady_peak.peak_bytes,
        "steady_increase_bytes": steady_peak.increase_bytes,
        "gradient_bytes": gradient_bytes,
        "activation_bytes": steady_peak.peak_bytes - rss_traced - gradient_bytes,
        # The whole step's increase, gradients included: the figure above goes
        # below zero once the step never holds all gradients at once.
        "step_increase_bytes": steady_peak.peak_bytes - rss_traced,
        # The same from the RSS before tracing: adds the traced graph's Python objects.
        "activation_from_built_bytes": steady_peak.peak_bytes - rss_model_built - gradient_bytes,
        # From the model alone: adds the optimizer's slots and the traced graph.
        "activation_from_model_bytes": steady_peak.peak_bytes - rss_model_only - gradient_bytes,
    }
    if path == "fit" and train_step.tracing_count() != 1:
        raise RuntimeError(f"Keras' step function was traced {train_step.tracing_count()} "
                           f"times; the baseline did not include its graph.")
    tensor_peak = tf_allocator_peak(train_step, images, labels)
    if tensor_peak is not None:
        result["tf_allocator_peak_increase_bytes"] = tensor_peak
        result["tf_allocator_activation_bytes"] = tensor_peak - gradient_bytes
    return result


def xla_buffer_bytes(dump_dir, module_substring="train_step"):
    """Bytes XLA's buffer assignment reserves for the largest module named like `module_substring`.

    Needs a run with XLA_FLAGS=--xla_dump_to=`dump_dir`. XLA:CPU allocates each compiled
    function's arguments, outputs and one block of temporaries up front; its dump states
    their total ("Total bytes used"), an exact figure where the process's RSS and the
    allocator's peak see one opaque block. Returns None when nothing matches.
    """
    sizes = []
    for name in os.listdir(dump_dir) if os.path.isdir(dump_dir) else ():
        if module_substring in name and name.endswith("buffer-assignment.txt"):
            with open(os.path.join(dump_dir, name), encoding="utf-8") as dump:
                match = re.search(r"Total bytes used: (\d+)", dump.read())
            if match:
                sizes.append(int(match.group(1)))
    return max(sizes) if sizes else None


def _settled_rss():
    gc.collect()
    process_memory.release_free_memory()
    return process_memory.current_rss_bytes()


def tf_allocator_peak(step, *arguments):
    """Peak bytes of TensorFlow's CPU allocator during one `step(*arguments)`, over the
    bytes live before it, when the allocator keeps statistics (None otherwise).

    Only the BFC allocator does (environment TF_CPU_ALLOCATOR_USE_BFC=true); it counts
    tensors only, not oneDNN scratch buffers or malloc overhead, so its difference to the
    RSS peak shows memory held outside TensorFlow's tensors.
    """
    if os.environ.get("TF_CPU_ALLOCATOR_USE_BFC", "").lower() not in ("1", "true"):
        return None  # Other allocators report nothing, or (under XLA) rounded blocks.
    try:
        before = tf.config.experimental.get_memory_info("CPU:0")["current"]
        if not before:
            return None
        tf.config.experimental.reset_memory_stats("CPU:0")
        step(*arguments).numpy()
        return tf.config.experimental.get_memory_info("CPU:0")["peak"] - before
    except (ValueError, RuntimeError, tf.errors.OpError):
        return None
