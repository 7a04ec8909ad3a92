"""The trainer's errors: each one says what went wrong and what to do about it."""


class FlagError(ValueError):
    """A training option (command-line flag) has a value the trainer cannot use.

    The message starts with the flag's name, e.g. `--batch_size must be ...`.
    """


class NoAcceleratorError(RuntimeError):
    """The requested distribution strategy needs hardware this machine does not have."""


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or Inf; the last good checkpoint is kept."""


class CheckpointMismatchError(ValueError):
    """A checkpoint or model directory does not fit the configuration of this run."""
