"""The memory and time of a training step, reversible or plain (for benchmarks/train_memory.py).

`measure_training_step` builds a named configuration (optionally with every stage
`blocks_multiplier` times deeper, and at another image size), the trainer's MomentumSGD
optimizer with its slots created, and a training step that ships (`shipped_steps`):
`path="loop"` the trainer's (`ClassificationTask.train_step` through `TrainingLoops`),
`path="fit"` Keras' `train_step` as `model.fit` runs it (traced before the baseline, which
`fit` itself cannot be). It then reports:

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

`step="gradients"` and `step="forward"` measure parts of a step (gradients without the
optimizer update; the training-mode forward and loss only), to attribute memory: those run
`make_partial_step`, a bare `tf.function` of the part, not a shipped step.
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
from irevnet_tf.benchmarking import process_memory, shipped_steps
from irevnet_tf.model import IRevNet
from irevnet_tf.training.optimizer import MomentumSGD

STEPS = ("train", "gradients", "forward")
PARTIAL_STEPS = STEPS[1:]
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


def make_partial_step(model, step="gradients", jit_compile=False):
    """A bare `tf.function(images, labels) -> loss` doing part of a training step, to
    attribute memory: "gradients" (forward and every gradient, no update) or "forward"
    (the training-mode forward and loss). Not a step that ships: see `shipped_steps`."""
    if step not in PARTIAL_STEPS:
        raise ValueError(f"`step` must be one of {PARTIAL_STEPS}, got {step!r}.")
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def partial_step(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = loss_fn(labels, logits)
        if step == "forward":
            return loss
        grads = tape.gradient(loss, model.trainable_variables)
        # Consume every gradient, or graph pruning would skip computing it.
        return loss + tf.add_n([tf.reduce_sum(tf.cast(g[..., :1], loss.dtype)) * 0.0
                                for g in grads])

    return tf.function(partial_step, jit_compile=jit_compile)


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
    if step not in STEPS:
        raise ValueError(f"`step` must be one of {STEPS}, got {step!r}.")
    if path not in PATHS:
        raise ValueError(f"`path` must be one of {PATHS}, got {path!r}.")
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
        shipped_steps.compile_for_fit(model, optimizer)
    optimizer.build(model.trainable_variables)

    rng = np.random.default_rng(seed)
    height, width, channels = kwargs["input_shape"]
    images = tf.constant(rng.standard_normal((batch_size, height, width, channels),
                                             dtype=np.float32))
    labels = tf.constant(rng.integers(0, kwargs["num_classes"], batch_size), tf.int32)
    if step != "train":
        train_step = make_partial_step(model, step=step, jit_compile=jit_compile)
    elif path == "fit":
        train_step = shipped_steps.keras_train_step_function(model, jit_compile=jit_compile)
    else:
        train_step = shipped_steps.TrainerStep(model, optimizer, images, labels,
                                               jit_compile=jit_compile)
    rss_model_built = _settled_rss()

    trace_start = time.perf_counter()
    train_step.get_concrete_function(images, labels)
    trace_seconds = time.perf_counter() - trace_start
    rss_traced = _settled_rss()

    with process_memory.measure_peak(memory_method) as first_peak:
        first_start = time.perf_counter()
        np.asarray(train_step(images, labels))
        first_step_seconds = time.perf_counter() - first_start
    for _ in range(warmup - 1):
        np.asarray(train_step(images, labels))

    step_seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.asarray(train_step(images, labels))
        step_seconds.append(time.perf_counter() - start)

    with process_memory.measure_peak(memory_method) as steady_peak:
        for _ in range(memory_repeats):
            np.asarray(train_step(images, labels))

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
    traces = getattr(train_step, "experimental_get_tracing_count", lambda: 1)()
    if traces != 1:
        raise RuntimeError(f"The step function was traced {traces} times; the baseline did "
                           "not include its graph.")
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
        np.asarray(step(*arguments))  # Waits for the step (a tensor or a numpy result).
        return tf.config.experimental.get_memory_info("CPU:0")["peak"] - before
    except (ValueError, RuntimeError, tf.errors.OpError):
        return None
