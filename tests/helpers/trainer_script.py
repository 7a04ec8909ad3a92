"""trainers/train_imagenet.py in fresh processes, as the entry-point and fault tests run it."""

import os
import subprocess
import sys
import time

from tests.helpers.processes import ROOT, python_env

SCRIPT = os.path.join(ROOT, "trainers", "train_imagenet.py")
EXPORT_SCRIPT = os.path.join(ROOT, "export", "export_savedmodel.py")
# A small learnable run on the embedded digits.
DIGITS = ["--dataset=digits", "--config=irevnet_tiny", "--image_size=16", "--batch_size=16",
          "--base_learning_rate=0.8", "--eval_steps=2", "--summary_images=0", "--seed=3"]


def start(args, log_path, **env):
    """Starts the trainer with `args`, stdout and stderr into `log_path`; the Popen."""
    log = open(log_path, "w")
    return subprocess.Popen([sys.executable, SCRIPT, *args], stdout=log,
                            stderr=subprocess.STDOUT, env=python_env(**env), cwd=ROOT)


def run(args, timeout=600, **env):
    """Runs the trainer with `args` to the end; the CompletedProcess (text output)."""
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                          env=python_env(**env), cwd=ROOT, timeout=timeout)


def wait_for(predicate, process, timeout=600, what="condition"):
    """Polls `predicate` until true; fails if `process` ends or `timeout` seconds pass first."""
    deadline = time.time() + timeout
    while not predicate():
        if process.poll() is not None:
            raise AssertionError(f"process ended (status {process.returncode}) before {what}")
        if time.time() > deadline:
            process.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def checkpoint_values(path):
    """{name: array} of the model, optimizer and step variables of checkpoint `path`."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(path)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.startswith(("model/", "optimizer/", "step/"))}
