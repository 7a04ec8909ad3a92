"""ProgressReporter: one absl log line per loop and the TensorBoard summaries of a run.

Training summaries go to `<model_dir>/train`, evaluation ones to `<model_dir>/eval`:
loss, top-1 accuracy, learning rate, images/s; at each evaluation top-1/top-5 accuracy
and decode(encode(x)) next to x for a few images (the model takes and returns pixels), with
the largest reconstruction error in pixel units and relative to the largest |x|. Only the chief writes.

Summaries are written with `tf.summary.write` and TensorBoard's plugin metadata, so that
writing them needs no `tensorboard` package (TensorFlow 2.21 no longer installs it);
viewing them does (`pip install tensorboard`).
"""

import os
import time

import numpy as np
import tensorflow as tf
from absl import logging
from tensorflow.core.framework import summary_pb2

from irevnet_tf import progress_log


def _metadata(plugin_name):
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin_name))


def write_scalar(name, value, step):
    """A scalar summary as TensorBoard's scalars plugin reads it."""
    tf.summary.write(name, tf.constant(float(value), tf.float32), step=step,
                     metadata=_metadata("scalars"))


def write_images(name, images, step):
    """Images in [0, 1], `[N, H, W, C]` with C in 1, 3 or 4, as TensorBoard's images plugin
    reads them (a string tensor: width, height, then one PNG per image)."""
    images = np.asarray(images, np.float32)
    pixels = tf.constant(np.round(images * 255.0).astype(np.uint8))
    height, width = images.shape[1:3]
    encoded = [tf.image.encode_png(image) for image in tf.unstack(pixels)]
    tensor = tf.stack([tf.constant(str(width)), tf.constant(str(height))] + encoded)
    tf.summary.write(name, tensor, step=step, metadata=_metadata("images"))


format_duration = progress_log.format_duration  # Kept here for existing callers.


class ProgressReporter:
    """Logs and summarises training and evaluation.

    Args:
        model_dir: where the `train/` and `eval/` summary directories go.
        total_steps: the run's length (for "step/total" and the time left).
        write_summaries: False on non-chief workers.
    """

    def __init__(self, model_dir, total_steps, write_summaries=True):
        self.total_steps = int(total_steps)
        if write_summaries:
            self.train_writer = tf.summary.create_file_writer(os.path.join(model_dir, "train"))
            self.eval_writer = tf.summary.create_file_writer(os.path.join(model_dir, "eval"))
        else:
            self.train_writer = self.eval_writer = tf.summary.create_noop_writer()
        # Throughput excludes the first loop, which includes tracing and compilation.
        self._timed_steps = 0
        self._timed_seconds = 0.0
        self._timed_images = 0
        self._first_images = 0
        self._loops = 0
        self.total_seconds = 0.0
        self.last_train = {}

    def train_loop(self, step, steps, sums, learning_rate, seconds):
        """Reports a loop of `steps` steps ending at `step`; `sums` = [loss_sum, correct, count]."""
        loss_sum, correct, count = (float(v) for v in sums)
        images_per_second = count / max(seconds, 1e-9)
        self._loops += 1
        self.total_seconds += seconds
        if self._loops == 1:
            self._first_images = count
        else:
            self._timed_steps += steps
            self._timed_seconds += seconds
            self._timed_images += count
        seconds_per_step = (self._timed_seconds / self._timed_steps if self._timed_steps
                            else seconds / max(steps, 1))
        metrics = {"loss": loss_sum / max(count, 1), "accuracy": correct / max(count, 1),
                   "learning_rate": float(learning_rate), "images_per_second": images_per_second}
        self.last_train = metrics
        logging.info(
            "step %d/%d (%.1f%%)  loss %.4f  accuracy %.4f  lr %.5g  %.1f images/s  %s left",
            step, self.total_steps, 100.0 * step / self.total_steps, metrics["loss"],
            metrics["accuracy"], metrics["learning_rate"], images_per_second,
            format_duration(seconds_per_step * (self.total_steps - step)))
        with self.train_writer.as_default():
            for name, value in metrics.items():
                write_scalar(name, value, step)
        return metrics

    @property
    def steady_images_per_second(self):
        """Training images/s over every loop but the first (which compiles), or over the
        first when it is the only one; None before any loop."""
        if self._timed_seconds:
            return self._timed_images / self._timed_seconds
        if self.total_seconds:
            return self._first_images / self.total_seconds
        return None

    def evaluation(self, step, sums):
        """Reports an evaluation; `sums` = [loss_sum, top1, top5, count]."""
        loss_sum, top1, top5, count = (float(v) for v in sums)
        metrics = {"loss": loss_sum / max(count, 1), "top1_accuracy": top1 / max(count, 1),
                   "top5_accuracy": top5 / max(count, 1), "examples": int(count)}
        logging.info("evaluation at step %d: top-1 %.4f  top-5 %.4f  loss %.4f  (%d examples)",
                     step, metrics["top1_accuracy"], metrics["top5_accuracy"], metrics["loss"],
                     metrics["examples"])
        with self.eval_writer.as_default():
            for name in ("loss", "top1_accuracy", "top5_accuracy"):
                write_scalar(name, metrics[name], step)
        return metrics

    @staticmethod
    def to_pixels(images):
        """Pixels in [0, 255] (the model's input and decode's output) to [0, 1] for display."""
        images = np.asarray(images, np.float32)
        return np.clip(images / 255.0, 0.0, 1.0)

    def reconstructions(self, step, originals, reconstructed):
        """Writes originals and decode(encode(x)) (pixels) side by side; returns the max
        error in pixels."""
        originals = np.asarray(originals, np.float32)
        reconstructed = np.asarray(reconstructed, np.float32)
        error = float(np.max(np.abs(originals - reconstructed))) if len(originals) else 0.0
        # The round trip as the package reports it everywhere: relative to the largest |x|.
        largest = float(np.max(np.abs(originals))) if len(originals) else 0.0
        relative = error / largest if largest > 0 else 0.0
        pairs = np.concatenate([self.to_pixels(originals), self.to_pixels(reconstructed)],
                               axis=2)
        with self.eval_writer.as_default():
            write_images("input_and_reconstruction", pairs, step)
            write_scalar("reconstruction_max_error_pixels", error, step)
            write_scalar("reconstruction_max_relative_error", relative, step)
        logging.info("reconstruction at step %d: max |decode(encode(x)) - x| = %.3g of the "
                     "largest |x| (%d images)", step, relative, len(originals))
        return error

    def flush(self):
        self.train_writer.flush()
        self.eval_writer.flush()


class Stopwatch:
    """Seconds since construction or the last `lap()`."""

    def __init__(self):
        self._start = time.perf_counter()

    def lap(self):
        now = time.perf_counter()
        elapsed, self._start = now - self._start, now
        return elapsed
