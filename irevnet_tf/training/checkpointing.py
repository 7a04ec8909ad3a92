"""Training checkpoints: save every few steps, resume by itself, refuse what does not fit, and
turn SIGTERM (preemption) into a last save.

`CheckpointKeeper` wraps a `tf.train.CheckpointManager` over `checkpoint_dir(model_dir)`.
In a multi-worker run every worker must take part in a save (saving may need collective
ops), but only the chief writes the model directory; the other workers write to a
private temporary directory that is deleted straight after (as Model Garden does). All
workers restore from the chief's directory, so --model_dir must be shared storage
(gs://, NFS) in multi-machine runs.

`PreemptionWatcher` records SIGTERM instead of dying; the loop checks it between loops,
saves and exits.
"""

import os
import signal
import threading

import tensorflow as tf
from absl import logging

from irevnet_tf.training import model_dir as model_dir_lib
from irevnet_tf.training import strategies
from irevnet_tf.training.errors import CheckpointMismatchError

CHECKPOINT_PREFIX = "ckpt"


class CheckpointKeeper:
    """Saves and restores a `tf.train.Checkpoint` of the training state.

    Args:
        checkpoint: the `tf.train.Checkpoint` (model, optimizer, step, ...).
        model_dir: the run's model directory.
        max_to_keep: how many recent checkpoints to keep.
        strategy: the distribution strategy (decides who writes).
    """

    def __init__(self, checkpoint, model_dir, max_to_keep, strategy):
        self.checkpoint = checkpoint
        self.directory = model_dir_lib.checkpoint_dir(model_dir)
        self.is_chief = strategies.is_chief(strategy)
        if self.is_chief:
            self.write_directory = self.directory
        else:
            task_type, task_id = strategies.worker_id(strategy)
            self.write_directory = os.path.join(model_dir, ".worker_tmp", f"{task_type}_{task_id}")
        self.manager = tf.train.CheckpointManager(
            checkpoint, self.write_directory, max_to_keep=max_to_keep,
            checkpoint_name=CHECKPOINT_PREFIX)

    def latest(self):
        """Path of the newest checkpoint in the model directory, or None."""
        return tf.train.latest_checkpoint(self.directory)

    def restore_latest(self):
        """Restores the newest checkpoint if there is one; returns its path or None.

        Raises CheckpointMismatchError when its variables do not fit this run's objects.
        """
        path = self.latest()
        if path is None:
            return None
        restore(self.checkpoint, path)
        return path

    def save(self, step):
        """Writes a checkpoint numbered `step`; returns its path (the chief's)."""
        path = self.manager.save(checkpoint_number=int(step))
        if not self.is_chief:
            tf.io.gfile.rmtree(self.write_directory)
            try:  # The shared parent too, once the last worker's directory is gone.
                parent = os.path.dirname(self.write_directory)
                if not tf.io.gfile.listdir(parent):
                    tf.io.gfile.rmtree(parent)
            except tf.errors.OpError:
                pass
            return os.path.join(self.directory, os.path.basename(path))
        return path


def restore(checkpoint, path):
    """Restores `checkpoint` from `path`; every object of this run must find its values."""
    try:
        status = checkpoint.restore(path)
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.InvalidArgumentError,
            tf.errors.NotFoundError) as error:
        raise CheckpointMismatchError(
            f"Checkpoint {path} does not fit this run's configuration (model, optimizer or "
            f"precision differ): {str(error).strip()[:600]} -- use a new --model_dir, or the "
            f"flags the checkpoint was trained with.") from None
    status.expect_partial()
    return status


class PreemptionWatcher:
    """Context manager that records SIGTERM (a preemption notice) instead of dying.

    Inside the `with` block, SIGTERM sets `requested`; the training loop checks it
    between loops, writes a checkpoint and stops. Outside the main thread (where Python
    cannot install signal handlers) it only watches nothing and says so.
    """

    def __init__(self, signals=(signal.SIGTERM,)):
        self.signals = tuple(signals)
        self.requested = False
        self._previous = {}

    def _handle(self, signum, frame):  # pylint: disable=unused-argument
        if not self.requested:
            logging.warning("Received signal %d: saving a checkpoint at the end of this loop, "
                            "then stopping.", signum)
        self.requested = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                self._previous[signum] = signal.signal(signum, self._handle)
        else:
            logging.info("Not in the main thread: SIGTERM will not trigger a checkpoint.")
        return self

    def __exit__(self, *exc_info):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        return False
