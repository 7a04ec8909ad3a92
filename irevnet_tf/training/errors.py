"""The trainer's errors: each one says what went wrong and what to do about it.

The errors of model artifacts (a checkpoint that does not fit or does not read) and of
writing files are defined beside them, in `irevnet_tf.model_files` and `irevnet_tf.files`,
and re-exported here so that the trainer's callers find every error in one place.
"""

from irevnet_tf.cli import FlagValueError
from irevnet_tf.files import WriteError  # noqa: F401  (re-exported)
from irevnet_tf.model_files import (CheckpointMismatchError,  # noqa: F401  (re-exported)
                                    UnreadableCheckpointError)


class FlagError(FlagValueError):
    """A training option (command-line flag) has a value the trainer cannot use.

    The message starts with the flag's name, e.g. `--batch_size must be ...`; a command
    line run by `irevnet_tf.cli.run` prints it as one line, exit status 2.
    """


class NoAcceleratorError(RuntimeError):
    """The requested distribution strategy needs hardware this machine does not have."""


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or Inf; the last good checkpoint is kept."""


class LostWorkerError(RuntimeError):
    """Another worker of a multi-worker run stopped answering; this worker stopped too."""
