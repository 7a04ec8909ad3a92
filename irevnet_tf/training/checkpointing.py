"""Training checkpoints: save every few steps, resume by itself, refuse what does not fit, and
turn SIGTERM (preemption) into a last save.

`CheckpointKeeper` wraps a `tf.train.CheckpointManager` over `checkpoint_dir(model_dir)`.
In a multi-worker run every worker must take part in a save (saving may need collective
ops), but only the chief writes the model directory; the other workers write to a
private temporary directory that is deleted straight after (as Model Garden does). All
workers restore from the chief's directory, so --model_dir must be shared storage
(gs://, NFS) in multi-machine runs.

Resuming uses the newest checkpoint that reads: a newer one that does not (a truncated or
missing data shard, a bad index, as an interrupted copy to shared storage leaves them) is
named in a warning and moved into `checkpoints/unreadable/` (never deleted). A directory
holding checkpoints of which none reads stops the run (`UnreadableCheckpointError`) rather
than starting afresh over it. A save that fails (disk full, file-size limit) removes its
`ckpt-N_temp` directory and raises `WriteError` naming the checkpoint and the last good one.

`PreemptionWatcher` records SIGTERM instead of dying; the loop checks it between loops,
saves and exits.
"""

import os
import signal
import threading

import tensorflow as tf
from absl import logging

from irevnet_tf import files
from irevnet_tf import model_files
from irevnet_tf.training import strategies

CHECKPOINT_PREFIX = model_files.CHECKPOINT_PREFIX


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
        self.directory = model_files.checkpoint_dir(model_dir)
        self.is_chief = strategies.is_chief(strategy)
        if self.is_chief:
            self.write_directory = self.directory
        else:
            task_type, task_id = strategies.worker_id(strategy)
            self.write_directory = os.path.join(model_dir, ".worker_tmp", f"{task_type}_{task_id}")
        self.max_to_keep = max_to_keep
        self.last_good = None
        self.manager = self._new_manager()

    def _new_manager(self):
        return tf.train.CheckpointManager(
            self.checkpoint, self.write_directory, max_to_keep=self.max_to_keep,
            checkpoint_name=CHECKPOINT_PREFIX)

    def latest(self):
        """Path of the newest good checkpoint in the model directory, or None."""
        return self.last_good or tf.train.latest_checkpoint(self.directory)

    def restore_latest(self):
        """Restores the newest checkpoint that reads; returns its path, or None if there is none.

        Newer unreadable checkpoints are named in a warning and (by the chief) moved aside.

        Raises:
            UnreadableCheckpointError: checkpoints exist but none reads.
            CheckpointMismatchError: the newest readable one does not fit this run's objects.
        """
        if self.is_chief:
            for leftover in model_files.remove_unfinished_saves(self.directory):
                logging.warning("Removed %s, left by a checkpoint save that did not finish.",
                                leftover)
        unreadable = []
        # Raises (moving nothing) when no checkpoint reads, so a rerun meets the same files.
        path = model_files.newest_readable_checkpoint(
            self.directory, on_unreadable=lambda *found: unreadable.append(found))
        moved = []
        for bad, problem in unreadable:
            if self.is_chief:
                target = model_files.move_aside(bad)
                moved.append(bad)
                logging.warning("Checkpoint %s is unreadable (%s): moved it to %s; resuming "
                                "from %s.", bad, problem, target,
                                path or "the start (no earlier checkpoint)")
            else:
                logging.warning("Checkpoint %s is unreadable (%s); resuming from %s (the chief "
                                "moves it aside).", bad, problem, path)
        if moved:
            # The state file still names the moved checkpoints: point it at what remains, and
            # start a manager that knows only those (it would otherwise rotate them out).
            if path is not None:
                remaining = list(reversed(model_files.checkpoint_paths(self.directory)))
                tf.compat.v1.train.update_checkpoint_state(
                    self.directory, path, all_model_checkpoint_paths=remaining)
            self.manager = self._new_manager()
        if path is None:
            return None
        restore(self.checkpoint, path)
        self.last_good = path
        return path

    def save(self, step):
        """Writes a checkpoint numbered `step`; returns its path (the chief's).

        Raises WriteError (naming the checkpoint, its directory and the last good one) when
        the write fails; the unfinished `ckpt-<step>_temp` directory is removed first.
        """
        try:
            path = self.manager.save(checkpoint_number=int(step))
        except files.WRITE_ERRORS as error:
            model_files.remove_unfinished_saves(self.write_directory)
            last = self.latest()
            raise files.write_error(
                f"checkpoint {CHECKPOINT_PREFIX}-{int(step)}", self.write_directory, error,
                advice=(f"The last good checkpoint is {last or 'none (none was written yet)'}; "
                        "free space and run the same command again to resume from it.")
            ) from None
        if self.is_chief:
            self.last_good = path
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
    return model_files.restore_checkpoint(
        checkpoint, path,
        description="this run's configuration (model, optimizer or precision differ)",
        advice=" -- use a new --model_dir, or the flags the checkpoint was trained with.")


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
