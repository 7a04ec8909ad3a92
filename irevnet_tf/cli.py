"""Quiet command lines: what every entry point (trainer, quickstart, analysis, export) calls
first, before TensorFlow is imported.

TensorFlow prints machine-specific chatter that tells a user nothing about their run: on a
CPU-only machine "Could not find cuda drivers" twice and an *error-level* "failed call to
cuInit"; the CPU-feature banner; during export "... unsupported characters which will be
renamed" per layer and "Assets written to: <temp folder>"; while saving checkpoints
"Sharding callback duration". `quiet_tensorflow()` removes exactly these lines, matched by
message, and nothing else:

- `TF_CPP_MIN_LOG_LEVEL=1` (C++ INFO off, warnings and errors kept), only when the user has
  not set it;
- the C++ lines printed while TensorFlow loads and probes its devices (before absl's C++
  logging reads any setting, so no setting silences them) are captured from file
  descriptor 2 and replayed without the lines matching `NATIVE_NOISE`;
- Python log records matching `PYTHON_NOISE` are dropped by a filter on absl's logger.

Library code never calls this: it only changes a process that a command line owns.
"""

import logging as std_logging
import os
import re
import sys
import tempfile

# C++ lines with no meaning for a user: CUDA probes on machines without a GPU driver and
# the CPU-instruction banner. Only whole lines matching one of these are dropped.
NATIVE_NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|cudart_stub\.cc.*Could not find cuda drivers"
    r"|failed call to cuInit: .*(UNKNOWN ERROR \(303\)|CUDA_ERROR_NO_DEVICE)"
    r"|cpu_feature_guard\.cc"
    r"|^To enable the following instructions: .* rebuild TensorFlow"
    r"|oneDNN custom operations are on")

# Python (absl/tf) log records about TensorFlow's own internals, dropped by message.
PYTHON_NOISE = re.compile(
    r"with unsupported characters which will be renamed to "
    r"|^Sharding callback duration"
    r"|^Assets written to: "
    r"|^Writing fingerprint to "
    r"|^Fingerprint not found\. Saved model loading will continue\."
    r"|^path_and_singleprint metric could not be logged")


class _DropNoise(std_logging.Filter):
    """Drops log records whose message matches PYTHON_NOISE."""

    def filter(self, record):
        try:
            message = record.getMessage()
        except Exception:  # A malformed record is someone else's bug: let it through.
            return True
        return not PYTHON_NOISE.search(message)


_FILTER = _DropNoise()


def install_log_filter():
    """Adds the PYTHON_NOISE filter to absl's and TensorFlow's Python loggers (idempotent)."""
    for name in ("absl", "tensorflow"):
        logger = std_logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    # Records of other loggers reach absl's handler (installed on the root logger by
    # app.run) by propagation, where logger filters do not apply: filter the handler too.
    from absl import logging as absl_logging

    handler = absl_logging.get_absl_handler()
    if _FILTER not in handler.filters:
        handler.addFilter(_FILTER)


def _without_noise(text):
    return "".join(line for line in text.splitlines(keepends=True)
                   if not NATIVE_NOISE.search(line))


def quiet_tensorflow():
    """Imports TensorFlow with its machine-specific noise removed (see the module doc).

    Call it at the top of a command line's `main` module, before anything imports
    TensorFlow. When TensorFlow is already imported it only installs the log filter.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    if "tensorflow" not in sys.modules:
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile(mode="w+b") as captured:
            os.dup2(captured.fileno(), 2)
            try:
                import tensorflow as tf
                # The device probe (cuInit) prints its line here rather than mid-run.
                tf.config.list_physical_devices()
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                captured.seek(0)
                text = _without_noise(captured.read().decode("utf-8", "replace"))
                if text:
                    sys.stderr.write(text)
                    sys.stderr.flush()
    install_log_filter()
    # The package's public names and Keras registrations, deferred by irevnet_tf/__init__.py
    # while a command line starts.
    import irevnet_tf

    for name in irevnet_tf.__all__:
        getattr(irevnet_tf, name)


# --- Path flags and one-line errors ---------------------------------------------------------

class PathFlagError(ValueError):
    """A path flag names the wrong kind of thing (a file for a directory or the reverse)."""


def _is_remote(path):
    return "://" in str(path)  # gs://, s3://, ...: checked by TensorFlow when used.


def _first_file_on_the_way(path):
    """The deepest existing ancestor of `path` if it is a file (then `path` cannot be
    created below it), else None."""
    parent = os.path.dirname(os.path.abspath(path))
    while parent and not os.path.exists(parent):
        parent, previous = os.path.dirname(parent), parent
        if parent == previous:
            return None
    return parent if parent and os.path.isfile(parent) else None


def check_directory_flag(flag, path):
    """Raises PathFlagError (naming `--flag`) when local `path` is, or lies below, a file:
    a directory is expected there (it may not exist yet). Writes nothing."""
    if not path or _is_remote(path):
        return
    if os.path.exists(path) and not os.path.isdir(path):
        raise PathFlagError(f"--{flag}={path} is a file; it must name a directory (created if "
                            "missing). Nothing was written.")
    blocker = _first_file_on_the_way(path)
    if blocker:
        raise PathFlagError(f"--{flag}={path} cannot be a directory: {blocker} is a file. "
                            "Nothing was written.")


def check_file_flag(flag, path, must_exist=False):
    """Raises PathFlagError (naming `--flag`) when local `path` is a directory (a file is
    expected), lies below a file, or, with `must_exist`, does not exist. Writes nothing."""
    if not path or _is_remote(path):
        return
    if os.path.isdir(path):
        raise PathFlagError(f"--{flag}={path} is a directory; it must name a file. Nothing "
                            "was written.")
    if must_exist and not os.path.exists(path):
        raise PathFlagError(f"--{flag}={path} does not exist.")
    blocker = _first_file_on_the_way(path)
    if blocker:
        raise PathFlagError(f"--{flag}={path} cannot be created: {blocker} is a file. "
                            "Nothing was written.")


def exit_with_error(message, exitcode=2):
    """Ends a command line with one line on stderr, `error: <message>`, and `exitcode` (2:
    a usage error), instead of absl's full usage text or a traceback."""
    sys.stderr.write(f"error: {' '.join(str(message).split())}\n")
    sys.stderr.flush()
    sys.exit(exitcode)
