"""trainers/train_imagenet.py as users run it: in subprocesses (fresh TensorFlow, one CPU).

Slow tests: preemption (SIGTERM writes a checkpoint), a SIGKILLed --deterministic run that
restarts and ends with the same weights as an uninterrupted one, and a two-process
multi-worker run on 127.0.0.1 that ends with identical weights on both workers.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from irevnet_tf.training import strategies
from irevnet_tf.training.errors import NoAcceleratorError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "trainers", "train_imagenet.py")
# A small learnable run on the embedded digits.
DIGITS = ["--dataset=digits", "--config=irevnet_tiny", "--image_size=16", "--batch_size=16",
          "--base_learning_rate=0.8", "--eval_steps=2", "--summary_images=0", "--seed=3"]


def environment(**extra):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def start(args, log_path, **env):
    log = open(log_path, "w")
    return subprocess.Popen([sys.executable, SCRIPT, *args], stdout=log,
                            stderr=subprocess.STDOUT, env=environment(**env), cwd=ROOT)


def run(args, timeout=600, **env):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                          env=environment(**env), cwd=ROOT, timeout=timeout)


def wait_for(predicate, process, timeout=600, what="condition"):
    deadline = time.time() + timeout
    while not predicate():
        if process.poll() is not None:
            raise AssertionError(f"process ended (status {process.returncode}) before {what}")
        if time.time() > deadline:
            process.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def checkpoint_values(path):
    reader = tf.train.load_checkpoint(path)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.startswith(("model/", "optimizer/", "step/"))}


def test_tpu_strategy_without_tpu_fails_at_once():
    started = time.time()
    with pytest.raises(NoAcceleratorError, match="--strategy=tpu: no TPU on this machine"):
        strategies.create_strategy("tpu")
    assert time.time() - started < 5


def test_script_tpu_without_tpu_and_bad_flags(tmp_path):
    result = run(["--strategy=tpu", f"--model_dir={tmp_path}"])
    assert result.returncode != 0
    assert "--strategy=tpu: no TPU on this machine" in result.stderr
    assert not os.path.exists(tmp_path / "run_config.json")


@pytest.mark.slow
@pytest.mark.parametrize("argv, message", [
    (["--batch_size=-4"], "--batch_size must be a positive integer"),
    (["--train_steps=5", "--train_epochs=2"], "--train_steps and --train_epochs are mutually"),
    (["--config=resnet"], "--config='resnet' is not a known configuration"),
    (["--image_size=20"], "--image_size=20 must be divisible by 32"),
    ([], "--model_dir is required"),
])
def test_script_names_the_bad_flag(tmp_path, argv, message):
    model_dir = [] if not argv else [f"--model_dir={tmp_path}"]
    result = run([*model_dir, "--dataset=digits", *argv])
    assert result.returncode != 0 and message in result.stderr, result.stderr[-2000:]


def test_rerunning_a_finished_run_reproduces_its_evaluation(tmp_path):
    """Evaluation is a function of the weights and the data alone: a finished run without
    --seed (each run then draws its own), rerun in another process, resumes, re-evaluates
    the same weights and reports the same numbers, on synthetic data (whose evaluation
    split a run's seed drew before)."""
    from ast import literal_eval

    from irevnet_tf.training import trainer

    options = dict(model_dir=str(tmp_path / "run"), config="irevnet_tiny", dataset="synthetic",
                   batch_size=8, train_steps=2, eval_steps=8, summary_images=0)
    first = trainer.train(**options)
    rerun = run([f"--{name}={value}" for name, value in options.items()])
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "Resuming from" in rerun.stderr
    second = literal_eval(re.search(r"Result: (\{.*\})", rerun.stderr).group(1))
    assert second["weights_digest"] == first["weights_digest"]
    assert first["eval_examples"] == second["eval_examples"] == 64
    for key in ("eval_loss", "eval_top1", "eval_top5"):
        assert second[key] == first[key], (key, first[key], second[key])


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint(tmp_path):
    log = tmp_path / "log.txt"
    process = start([f"--model_dir={tmp_path / 'model'}", *DIGITS, "--train_steps=100000",
                     "--steps_per_loop=5", "--checkpoint_every=0", "--eval_every=0"], log)
    wait_for(lambda: re.search(r"step \d+/100000", log.read_text()), process,
             what="the first progress line")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=300) == 143
    text = log.read_text()
    step = int(re.search(r"Preempted: saved .*ckpt-(\d+) at step (\d+)", text).group(2))
    latest = tf.train.latest_checkpoint(str(tmp_path / "model" / "checkpoints"))
    assert latest.endswith(f"ckpt-{step}") and step % 5 == 0 and step < 100000
    assert int(checkpoint_values(latest)["step/.ATTRIBUTES/VARIABLE_VALUE"]) == step


@pytest.mark.slow
def test_sigkill_and_restart_give_the_uninterrupted_weights(tmp_path):
    args = [*DIGITS, "--deterministic", "--train_steps=40", "--steps_per_loop=5",
            "--checkpoint_every=10", "--eval_every=0"]
    uninterrupted = run([f"--model_dir={tmp_path / 'straight'}", *args])
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]

    model_dir = tmp_path / "killed"
    process = start([f"--model_dir={model_dir}", *args], tmp_path / "log.txt")
    checkpoints = model_dir / "checkpoints"
    wait_for(lambda: tf.train.latest_checkpoint(str(checkpoints)) is not None, process,
             what="the first checkpoint")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    killed_at = tf.train.latest_checkpoint(str(checkpoints))
    assert not killed_at.endswith("ckpt-40")
    resumed = run([f"--model_dir={model_dir}", *args])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming from" in resumed.stderr

    expected = checkpoint_values(str(tmp_path / "straight" / "checkpoints" / "ckpt-40"))
    actual = checkpoint_values(str(checkpoints / "ckpt-40"))
    assert sorted(expected) == sorted(actual)
    for name, value in expected.items():
        np.testing.assert_array_equal(actual[name], value, err_msg=name)


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_multi_worker_on_two_processes(tmp_path):
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    model_dir = tmp_path / "model"
    args = [f"--model_dir={model_dir}", "--strategy=multi_worker", *DIGITS,
            "--train_steps=12", "--steps_per_loop=4", "--checkpoint_every=8", "--eval_every=8"]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(start(args, tmp_path / f"worker{index}.txt",
                               TF_CONFIG=json.dumps(tf_config)))
    for process in processes:
        assert process.wait(timeout=900) == 0
    logs = [(tmp_path / f"worker{index}.txt").read_text() for index in range(2)]
    digests = [re.search(r"weights digest ([0-9a-f]{64})", log).group(1) for log in logs]
    assert digests[0] == digests[1]
    assert all("2 replica(s)" in log for log in logs)
    assert tf.train.latest_checkpoint(str(model_dir / "checkpoints")).endswith("ckpt-12")
    assert os.path.exists(model_dir / "model.keras")
    assert not os.path.exists(model_dir / ".worker_tmp")
