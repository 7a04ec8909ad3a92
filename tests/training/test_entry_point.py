"""trainers/train_imagenet.py as users run it: in subprocesses (fresh TensorFlow, one CPU).

Slow tests: a bad flag's message from the script, from the configuration and from the plan
(the other messages are checked in-process, tests/training/test_config.py), and preemption
(SIGTERM writes a checkpoint). A SIGKILLed run that restarts and ends with the uninterrupted
run's weights, and a two-process multi-worker run whose workers end with identical weights,
are in tests/training/test_fault_processes.py (`test_sigkill_during_a_checkpoint_write`,
`test_multi_worker_run_and_a_lost_worker`), which run both anyway.
"""

import os
import re
import signal
import time

import pytest
import tensorflow as tf

from irevnet_tf.training import strategies
from irevnet_tf.training.errors import NoAcceleratorError
from tests.helpers.trainer_script import DIGITS, checkpoint_values, run, start, wait_for

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
    # One error of the configuration's checks and one of the plan's (after the data set's
    # description is read): the two ways a bad flag reaches the script's stderr. The
    # configuration's other messages are the same path, checked in-process in
    # test_config.py::test_flag_messages_as_the_script_prints_them.
    (["--batch_size=-4"], "--batch_size must be a positive integer"),
    (["--image_size=20"], "--image_size=20 must be divisible by 32"),
])
def test_script_names_the_bad_flag(tmp_path, argv, message):
    result = run([f"--model_dir={tmp_path}", "--dataset=digits", *argv])
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
