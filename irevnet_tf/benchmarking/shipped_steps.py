"""The training steps that ship, as callables a memory or time measurement can run.

- `TrainerStep`: the trainer's step, `ClassificationTask.train_step` run by
  `TrainingLoops.train` (the compiled loop of `irevnet_tf.training.train`) for one step, on
  an iterator that repeats one batch. The loss, the gradient, the update, the non-finite
  check, the step counter and the strategy's `run` are the trainer's own.
- `KerasFitStep`: `model.fit` itself, one epoch of one batch of the given arrays, for a
  model compiled with `model.compile(optimizer=..., loss=...)`.
- `keras_train_step_function`: Keras' `train_step` (the function `fit` runs per batch) under
  the model's `distribute_strategy.run` in a `tf.function`, exactly as `fit`'s per-step
  function wraps it, from public Keras API only: unlike `fit` it can be traced before it
  runs, which a resident-memory baseline needs (benchmarks/train_memory.py --path=fit).

Every step returns something with `.numpy()` or a numpy value, so `train_step.
tf_allocator_peak(step, images, labels)` measures any of them.
"""

import keras
import numpy as np
import tensorflow as tf

from irevnet_tf.training import task as task_lib
from irevnet_tf.training import trainer as trainer_lib


class TrainerStep:
    """The trainer's step on one fixed batch: `step(images, labels)` runs one optimizer step
    of `TrainingLoops.train` (the batch given at construction; the arguments are accepted
    for the common step signature and must be that batch).

    Args:
        model: an IRevNet.
        optimizer: the optimizer (the trainer builds `MomentumSGD`); built here.
        images, labels: the batch every step trains on.
        strategy: default: the default strategy (one replica, what a one-device run uses).
        jit_compile: compile the replica's forward and backward pass with XLA.
        label_smoothing, dropout_seed: as the trainer's flags.
    """

    def __init__(self, model, optimizer, images, labels, strategy=None, jit_compile=False,
                 label_smoothing=0.0, dropout_seed=0):
        self.strategy = strategy or tf.distribute.get_strategy()
        self._batch = (images, labels)
        with self.strategy.scope():
            if not optimizer.built:  # As the trainer does, before its first step.
                optimizer.build(model.trainable_variables)
            self.step_variable = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.task = task_lib.ClassificationTask(
            model, optimizer, global_batch_size=int(images.shape[0]),
            num_classes=int(model.num_classes), label_smoothing=label_smoothing,
            dropout_seed=dropout_seed)
        self.loops = trainer_lib.TrainingLoops(self.strategy, self.task, self.step_variable,
                                               jit_compile, reconstruction_count=0)
        dataset = tf.data.Dataset.from_tensors(self._batch).repeat()
        self._iterator = iter(self.strategy.experimental_distribute_dataset(dataset))

    def get_concrete_function(self, images=None, labels=None):
        """Traces the loop without running a step."""
        self.loops.trace_train(self._iterator)

    def __call__(self, images=None, labels=None):
        """One step; the summed `[loss_sum, correct, count]` (numpy)."""
        return self.loops.train(self._iterator, 1)


class KerasFitStep:
    """`model.fit(images, labels, batch_size=len(images), epochs=1)` as a step: one optimizer
    step of Keras' own loop. Returns the epoch's loss (numpy). Keras traces its step
    function on the first call and reuses it after (`make_train_function` caches it)."""

    def __init__(self, model):
        self.model = model

    def __call__(self, images, labels):
        history = self.model.fit(images, labels, batch_size=int(images.shape[0]), epochs=1,
                                 shuffle=False, verbose=0)
        return np.float32(history.history["loss"][-1])


def keras_train_step_function(model, jit_compile=False):
    """`tf.function((images, labels) -> loss)` running `model.train_step` under
    `model.distribute_strategy.run`, as `fit`'s per-step function does, for a compiled
    model; it can be traced (`get_concrete_function`) before it runs."""
    def one_step(images, labels):
        logs = model.distribute_strategy.run(model.train_step, args=((images, labels),))
        return logs["loss"]

    return tf.function(one_step, jit_compile=jit_compile)


def compile_for_fit(model, optimizer):
    """`model.compile` as a Keras user trains an IRevNet: sparse cross-entropy on logits."""
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
