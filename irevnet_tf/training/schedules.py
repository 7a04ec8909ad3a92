"""Learning-rate schedules with linear warm-up: the paper's step decay and cosine decay.

Both are Keras `LearningRateSchedule`s (registered, with `get_config`), computed with
tensor ops only, so they run inside XLA/TPU programs and take the optimizer's step.
"""

import math

import keras
import tensorflow as tf


def _warmup_factor(step, warmup_steps):
    """(step + 1) / warmup_steps during warm-up, then 1: the last warm-up step reaches the peak."""
    if warmup_steps <= 0:
        return tf.ones_like(step)
    return tf.minimum((step + 1.0) / float(warmup_steps), 1.0)


@keras.saving.register_keras_serializable(package="irevnet_tf")
class WarmupStepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """`peak * decay_factor ** (number of boundaries <= step)`, after a linear warm-up.

    The paper's ImageNet schedule is `WarmupStepDecay(0.1, (160000, 320000, 480000))`
    at batch 256.

    Args:
        peak_learning_rate: the rate after warm-up and before the first boundary.
        boundaries: increasing steps at which the rate is multiplied by `decay_factor`.
        decay_factor: the multiplier at each boundary.
        warmup_steps: steps of linear warm-up from `peak / warmup_steps` to `peak`.
    """

    def __init__(self, peak_learning_rate, boundaries=(), decay_factor=0.1, warmup_steps=0):
        self.peak_learning_rate = float(peak_learning_rate)
        self.boundaries = tuple(int(b) for b in boundaries)
        self.decay_factor = float(decay_factor)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        decays = tf.zeros_like(step)
        for boundary in self.boundaries:
            decays += tf.cast(step >= float(boundary), tf.float32)
        rate = self.peak_learning_rate * tf.pow(self.decay_factor, decays)
        return rate * _warmup_factor(step, self.warmup_steps)

    def get_config(self):
        return {"peak_learning_rate": self.peak_learning_rate,
                "boundaries": list(self.boundaries), "decay_factor": self.decay_factor,
                "warmup_steps": self.warmup_steps}


@keras.saving.register_keras_serializable(package="irevnet_tf")
class WarmupCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to `peak`, then `peak * (1 + cos(pi * t)) / 2` with t from 0 to 1 at
    `total_steps` (and 0 after).

    Args:
        peak_learning_rate: the rate at the end of warm-up.
        total_steps: the step at which the rate reaches 0.
        warmup_steps: steps of linear warm-up.
    """

    def __init__(self, peak_learning_rate, total_steps, warmup_steps=0):
        self.peak_learning_rate = float(peak_learning_rate)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        if self.total_steps <= self.warmup_steps:
            raise ValueError(f"WarmupCosineDecay: `total_steps` ({total_steps}) must exceed "
                             f"`warmup_steps` ({warmup_steps}).")

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        decay_steps = float(self.total_steps - self.warmup_steps)
        progress = tf.clip_by_value((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
        rate = self.peak_learning_rate * 0.5 * (1.0 + tf.cos(math.pi * progress))
        return rate * _warmup_factor(step, self.warmup_steps)

    def get_config(self):
        return {"peak_learning_rate": self.peak_learning_rate,
                "total_steps": self.total_steps, "warmup_steps": self.warmup_steps}


def build_schedule(name, plan, decay_factor=0.1):
    """The schedule `name` ("step" or "cosine") for a TrainingPlan."""
    if name == "step":
        return WarmupStepDecay(plan.peak_learning_rate, plan.decay_boundaries,
                               decay_factor=decay_factor, warmup_steps=plan.warmup_steps)
    if name == "cosine":
        return WarmupCosineDecay(plan.peak_learning_rate, plan.total_steps,
                                 warmup_steps=plan.warmup_steps)
    raise ValueError(f"--lr_schedule={name!r} is not accepted; choose one of: step, cosine.")
