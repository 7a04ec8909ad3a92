"""Memory probes for tests/test_reversible.py: each runs in a fresh process and prints one line,
`PEAKS <json>`.

    TF_CPU_ALLOCATOR_USE_BFC=true python -m irevnet_tf.benchmarking.memory_probes gradients eager 32
    TF_CPU_ALLOCATOR_USE_BFC=true python -m irevnet_tf.benchmarking.memory_probes step train
    XLA_FLAGS=--xla_dump_to=DIR python -m irevnet_tf.benchmarking.memory_probes xla 2 True

A fresh process because TensorFlow's CPU allocator keeps statistics only when
TF_CPU_ALLOCATOR_USE_BFC is set before TensorFlow starts, and XLA dumps its buffer assignment
only with XLA_FLAGS set then. Peaks are `train_step.tf_allocator_peak`: the allocator's peak
of live tensor bytes during one step over the bytes live before it.

- `gradients MODE BATCH`: the gradient computation alone (`tf.GradientTape` over the
  training-mode loss, every gradient consumed), eagerly or in a `tf.function`, for
  irevnet_small at 32x32 and the same model with every stage twice as deep, reversible and
  plain; each peak minus one copy of the parameters (the gradients themselves).
- `step MODE`: the whole training step as it ships: MODE "train" is the trainer's
  (`ClassificationTask.train_step` through `TrainingLoops`, `shipped_steps.TrainerStep`),
  "fit" is `model.fit` itself (`shipped_steps.KerasFitStep`), both with the trainer's
  `MomentumSGD`, at batch 2, four times irevnet_small's channels and three times its blocks
  (129 MB of parameters, none above 9.4 MB: a copy of the parameters outweighs the step's
  activations and scratch). Each is measured as shipped and with the one-replica
  all-reduce that MomentumSGD skips put back (Keras' own `_all_reduce_sum_gradients`,
  whose gradient is one op taking every gradient): the step that holds every gradient
  before it updates any. Three steps each, after a first that creates the optimizer's
  slots and traces the step.
- `xla MULTIPLIER REVERSIBLE`: one step of the trainer with `jit_compile=True` (its
  forward and backward pass compiled by XLA, `TrainingLoops`), irevnet_small at 32x32,
  batch 32, every stage MULTIPLIER times deeper; the parent reads XLA's buffer assignment
  (`train_step.xla_buffer_bytes(DIR, "compute_gradients")`).
"""

import json
import sys

import keras
import tensorflow as tf

from irevnet_tf.benchmarking import shipped_steps, train_step
from irevnet_tf.model import IRevNet
from irevnet_tf.training.optimizer import MomentumSGD


def _one_op_order():
    # One inter-op thread: the graph executor then runs independent ops in one order, not in
    # whichever order two threads reach them (which moved the gradients' peaks by 10 MB
    # between runs).
    tf.config.threading.set_inter_op_parallelism_threads(1)


def _gradients(model, images, labels):
    with tf.GradientTape() as tape:
        logits = model(images, training=True)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
            labels, logits, from_logits=True))
    grads = tape.gradient(loss, model.trainable_variables)
    # Consume every gradient, or graph pruning would skip computing it.
    return loss + tf.add_n([tf.reduce_sum(g[..., :1]) * 0.0 for g in grads])


def gradient_peaks(mode, batch_size):
    """{"multiplier,reversible": peak bytes minus the gradients} (see the module doc)."""
    _one_op_order()
    peaks = {}
    for multiplier in (1, 2):
        for reversible in (True, False):
            kwargs = train_step.benchmark_model_kwargs("irevnet_small", 32, multiplier,
                                                       reversible)
            model = IRevNet(**kwargs)
            images = tf.random.normal([batch_size, *kwargs["input_shape"]])
            labels = tf.zeros([batch_size], tf.int32)
            compute = _gradients if mode == "eager" else tf.function(_gradients)
            arguments = (model, images, labels)
            compute(*arguments)
            # The smallest of three steps: what the step needs, less the noise.
            peak = min(train_step.tf_allocator_peak(compute, *arguments) for _ in range(3))
            peaks[f"{multiplier},{reversible}"] = peak - train_step.parameter_bytes(
                model.trainable_variables)
    return peaks


class HoldingMomentumSGD(MomentumSGD):
    """MomentumSGD with Keras' one-replica all-reduce of the gradients put back."""

    def _all_reduce_sum_gradients(self, grads_and_vars):
        return super(MomentumSGD, self)._all_reduce_sum_gradients(grads_and_vars)


def step_model_kwargs():
    kwargs = train_step.benchmark_model_kwargs("irevnet_small", 32, blocks_multiplier=3)
    kwargs["channels"] = tuple(4 * c for c in kwargs["channels"])
    return kwargs


def step_peaks(mode):
    """{"shipped": [3 peaks], "holding": [3 peaks], "parameters": bytes} (module doc)."""
    _one_op_order()
    peaks = {}
    for name, optimizer_class in (("shipped", MomentumSGD), ("holding", HoldingMomentumSGD)):
        kwargs = step_model_kwargs()
        model = IRevNet(**kwargs)
        optimizer = optimizer_class(0.01, momentum=0.9, l2_decay=1e-4)
        images = tf.random.normal([2, *kwargs["input_shape"]])
        labels = tf.zeros([2], tf.int32)
        if mode == "train":
            step = shipped_steps.TrainerStep(model, optimizer, images, labels)
        elif mode == "fit":
            shipped_steps.compile_for_fit(model, optimizer)
            step = shipped_steps.KerasFitStep(model)
        else:
            raise ValueError(f"step mode must be 'train' or 'fit', got {mode!r}.")
        step(images, labels)  # Creates the optimizer's slots and traces the step.
        peaks[name] = [train_step.tf_allocator_peak(step, images, labels) for _ in range(3)]
        peaks["parameters"] = train_step.parameter_bytes(model.trainable_variables)
    return peaks


def xla_step(multiplier, reversible):
    """One XLA-compiled trainer step (the parent reads the buffer assignment XLA dumps)."""
    kwargs = train_step.benchmark_model_kwargs("irevnet_small", 32, multiplier, reversible)
    model = IRevNet(**kwargs)
    images = tf.random.normal([32, *kwargs["input_shape"]])
    labels = tf.zeros([32], tf.int32)
    step = shipped_steps.TrainerStep(model, MomentumSGD(0.01, momentum=0.9, l2_decay=1e-4),
                                     images, labels, jit_compile=True)
    step(images, labels)
    return {}


def main(argv):
    probe, arguments = argv[1], argv[2:]
    if probe == "gradients":
        peaks = gradient_peaks(arguments[0], int(arguments[1]))
    elif probe == "step":
        peaks = step_peaks(arguments[0])
    elif probe == "xla":
        peaks = xla_step(int(arguments[0]), arguments[1] == "True")
    else:
        raise SystemExit(f"unknown probe {probe!r}; known: gradients, step, xla")
    print("PEAKS " + json.dumps(peaks))


if __name__ == "__main__":
    main(sys.argv)
