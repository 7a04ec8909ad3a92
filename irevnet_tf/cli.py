"""What every command line (trainer, quickstart, analysis, export, release converter, client)
shares: `run(main)` in place of absl's `app.run`, path-flag checks, and one-line errors.

`run(main)`:
- turns every bad flag value into one line on stderr, `error: --flag=...: what is accepted`,
  and exit status 2, whether absl refuses it while parsing (a wrong type, a value outside
  an enum or a bound, a missing required flag, an unknown flag) or `main` does
  (`FlagValueError`, which the trainer's `FlagError` and `PathFlagError` are, or absl's
  `app.UsageError`): a command checks its flags before it writes anything, so a usage
  error leaves nothing behind;
- exits 0 after `--help` (`--helpfull`, `-h`, `-?`) prints the usage; absl exits 1;
- drops TensorFlow's own Python log records about its internals (`PYTHON_NOISE`: "... will
  be renamed" per layer during export, "Assets written to: <temp folder>", "Sharding
  callback duration"), by a filter on absl's and TensorFlow's loggers.

TensorFlow's C++ start-up lines are not touched here: `import irevnet_tf` sets their level
before TensorFlow loads (irevnet_tf/environment.py), the same for a command line and a
library user.
"""

import functools
import logging as std_logging
import os
import re
import sys

from absl import app
from absl import flags

# Python (absl/tf) log records about TensorFlow's own internals, dropped by message.
PYTHON_NOISE = re.compile(
    r"with unsupported characters which will be renamed to "
    r"|^Sharding callback duration"
    r"|^Assets written to: "
    r"|^Writing fingerprint to "
    r"|^Fingerprint not found\. Saved model loading will continue\."
    r"|^path_and_singleprint metric could not be logged")

# absl's help flags: short help lists the main module's flags, full help every flag.
SHORT_HELP = ("--help", "-help", "-h", "-?", "--helpshort", "-helpshort")
FULL_HELP = ("--helpfull", "-helpfull")
USAGE_ERROR_EXIT_CODE = 2


class FlagValueError(ValueError):
    """A command-line flag has a value the command cannot use. The message names the flag
    (`--name=value ...`) and what it accepts; `run` prints it as one line, exit status 2."""


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


def parse_flags(argv):
    """absl's flag parsing with one-line errors (exit 2) and a help that exits 0."""
    for argument in argv[1:]:
        if argument == "--":
            break
        if argument in SHORT_HELP or argument in FULL_HELP:
            app.usage(shorthelp=argument in SHORT_HELP, writeto_stdout=True, exitcode=0)
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:  # Names the flag and, for enums and bounds, what it takes.
        exit_with_error(_with_accepted_values(str(error)))


def _with_accepted_values(message):
    """absl's parse error, plus what the flag accepts when absl left it out (a value of the
    wrong type: "flag --batch_size=abc: invalid literal for int() ...")."""
    match = re.match(r"flag --(\w+)=", message)
    if not match or match.group(1) not in flags.FLAGS:
        return message
    accepted = flags.FLAGS[match.group(1)].parser.syntactic_help
    if not accepted or accepted in message:
        return message
    return f"{message.rstrip('.')}; --{match.group(1)} takes {accepted}."


def _main_with_one_line_errors(main, argv):
    install_log_filter()
    try:
        return main(argv)
    except (FlagValueError, app.UsageError) as error:
        exit_with_error(error)


def run(main):
    """`absl.app.run(main)` with the behaviour described in the module docstring."""
    app.run(functools.partial(_main_with_one_line_errors, main), flags_parser=parse_flags)


# --- Path flags and one-line errors ---------------------------------------------------------

class PathFlagError(FlagValueError):
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


def check_existing_flag(flag, path, what):
    """Raises PathFlagError (naming `--flag` and `what` it must name) when local `path` is
    empty or does not exist. Remote paths are left to TensorFlow."""
    if not path:
        raise PathFlagError(f"--{flag} is required: {what}.")
    if not _is_remote(path) and not os.path.exists(path):
        raise PathFlagError(f"--{flag}={path} does not exist; it must name {what}.")


def exit_with_error(message, exitcode=USAGE_ERROR_EXIT_CODE):
    """Ends a command line with one line on stderr, `error: <message>`, and `exitcode` (2:
    a usage error), instead of absl's full usage text or a traceback."""
    sys.stderr.write(f"error: {' '.join(str(message).split())}\n")
    sys.stderr.flush()
    sys.exit(exitcode)
