"""Runs one entry point's `main` on several command lines in one process, as `cli.run` would,
and prints what each did as JSON: the exit status and what went to stderr.

    python -m tests.entry_point_driver <script path | module name> '<json list of argv>'

Each entry point imports TensorFlow (seconds per process), so the flag checks of one entry
point share one process; the last step is a real `cli.run(main)` with `--help`, whose exit
status is the process's own (0 expected).
"""

import contextlib
import io
import json
import os
import runpy
import sys

from absl import flags

from irevnet_tf import cli


def _load(entry_point):
    """The entry point's globals, its flags defined, without running its `__main__` block."""
    if entry_point.endswith(".py"):
        return runpy.run_path(entry_point, run_name="entry_point_under_test")
    return runpy.run_module(entry_point, run_name="entry_point_under_test")


def run_case(main, argv):
    """`{"code", "stderr"}` of one command line through cli's parser and error handling."""
    flags.FLAGS.unparse_flags()
    stderr = io.StringIO()
    code = 0
    with contextlib.redirect_stderr(stderr):
        try:
            remaining = cli.parse_flags(argv)
            code = cli._main_with_one_line_errors(main, remaining) or 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    return {"code": code, "stderr": stderr.getvalue()}


def main():
    entry_point, cases = sys.argv[1], json.loads(sys.argv[2])
    namespace = _load(entry_point)
    name = os.path.basename(entry_point)
    results = [run_case(namespace["main"], [name, *argv]) for argv in cases]
    print(json.dumps(results))
    sys.stdout.flush()
    flags.FLAGS.unparse_flags()
    sys.argv = [name, "--help"]
    cli.run(namespace["main"])


if __name__ == "__main__":
    main()
