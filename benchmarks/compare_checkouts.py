"""Speed of two checkouts of irevnet_tf, measured alternately in one run (A B A B ...).

    python -m benchmarks.compare_checkouts --baseline=/tmp/old_float --rounds=5 \
        --configs=irevnet_cifar --batch_sizes=64

Runs `benchmarks/forward.py` of each checkout in a fresh process per round, baseline and
candidate (default: this checkout) in turn, and prints one JSON line per path (encode,
decode, call) with each side's median images/s over the rounds and their ratio
(candidate / baseline). Alternating in one run is what makes the ratio meaningful on a
shared machine: load that comes and goes hits both sides alike.

Used for the integer stream's cost against the float stream it replaced: check out the
last float-stream commit into a directory (`git worktree add /tmp/old_float bcad634`)
and pass it as --baseline.
"""

import json
import os
import subprocess
import sys

import numpy as np
from absl import app, flags

from benchmarks import common

FLAGS = flags.FLAGS
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_string("baseline", None, "Directory of the baseline checkout (repository root).")
flags.DEFINE_string("candidate", HERE, "Directory of the candidate checkout.")
flags.DEFINE_integer("rounds", 5, "Alternating rounds (one process per side per round).")
flags.DEFINE_list("configs", ["irevnet_cifar"], "Configurations (forward.py --configs).")
flags.DEFINE_list("batch_sizes", ["64"], "Batch sizes, one per configuration.")
flags.DEFINE_integer("repeats", 5, "Timed calls per process (forward.py --repeats).")
flags.mark_flag_as_required("baseline")

PATHS = ("encode", "decode", "call_tf_function")


def _run_forward(checkout):
    env = dict(os.environ, PYTHONPATH=checkout, TF_CPP_MIN_LOG_LEVEL="2")
    command = [sys.executable, "-m", "benchmarks.forward", f"--configs={','.join(FLAGS.configs)}",
               f"--batch_sizes={','.join(FLAGS.batch_sizes)}", f"--repeats={FLAGS.repeats}",
               "--calibration_steps=0"]
    completed = subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True)
    if completed.returncode:
        raise RuntimeError(f"forward.py in {checkout} failed:\n{completed.stderr[-2000:]}")
    return [json.loads(line) for line in completed.stdout.splitlines()
            if line.startswith("{")]


def main(argv):
    del argv
    if len(FLAGS.batch_sizes) != len(FLAGS.configs):
        raise app.UsageError("--batch_sizes needs one entry per --configs entry.")
    for argument, directory in (("--baseline", FLAGS.baseline),
                                ("--candidate", FLAGS.candidate)):
        if not os.path.isfile(os.path.join(directory, "benchmarks", "forward.py")):
            raise app.UsageError(f"{argument}={directory!r} is not an irevnet_tf checkout "
                                 f"(no benchmarks/forward.py).")
    samples = {}  # (side, config, path) -> images/s per round
    for _ in range(FLAGS.rounds):
        for side, checkout in (("baseline", FLAGS.baseline), ("candidate", FLAGS.candidate)):
            for result in _run_forward(checkout):
                for path in PATHS:
                    key = (side, result["config"], path)
                    samples.setdefault(key, []).append(result[f"{path}_images_per_s"])
    for config in FLAGS.configs:
        for path in PATHS:
            base = samples[("baseline", config, path)]
            cand = samples[("candidate", config, path)]
            # Ratio per round (same moment, same load), then the median of the ratios.
            ratios = [c / b for b, c in zip(base, cand)]
            print(json.dumps({
                "config": config, "path": path,
                "baseline_images_per_s": round(float(np.median(base)), 2),
                "candidate_images_per_s": round(float(np.median(cand)), 2),
                "candidate_over_baseline": round(float(np.median(ratios)), 3),
                "ratios": [round(r, 3) for r in ratios],
                "machine": common.machine_description()}), flush=True)


if __name__ == "__main__":
    app.run(main)
