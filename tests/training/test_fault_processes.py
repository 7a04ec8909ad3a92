"""Faults in real processes (slow): a file-size limit (EFBIG) while checkpointing and exporting,
SIGKILL during a checkpoint write and during an export, and a worker SIGKILLed mid-loop in a
two-process multi-worker run on 127.0.0.1.

Each test checks the one-line message (no traceback), that nothing earlier was lost, and that
rerunning the same command resumes and ends bit-identical to an uninterrupted run. Every
process here proves something no other one does (CI time): the SIGKILLed-and-resumed run is
also the entry point's restart test (its last checkpoint equals the uninterrupted run's,
variable by variable), and the uninterrupted multi-worker run is also the entry point's
multi-worker test (identical weights on both workers, evaluation, the final files).
"""

import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers.processes import ROOT, free_ports, python_env
from tests.helpers.trainer_script import (DIGITS, EXPORT_SCRIPT, SCRIPT, checkpoint_values,
                                          start, wait_for)

pytestmark = pytest.mark.slow

ARGS = [*DIGITS, "--deterministic", "--train_steps=20", "--steps_per_loop=5",
        "--checkpoint_every=5", "--eval_every=0"]
# Below a checkpoint's data file (about 650 kB here) and above every other file but model.keras.
LIMITED = 500_000


def run(script, args, file_size_limit=None, timeout=600):
    """Runs `script` in a fresh Python; with `file_size_limit`, under RLIMIT_FSIZE (writes past
    it fail with EFBIG: Python ignores SIGXFSZ, so the write returns the error)."""
    prelude = ("import resource, runpy, sys; "
               f"resource.setrlimit(resource.RLIMIT_FSIZE, ({file_size_limit}, "
               f"{file_size_limit})); " if file_size_limit else "import runpy, sys; ")
    code = prelude + f"sys.argv = {[script, *args]!r}; runpy.run_path({script!r}, " \
                     "run_name='__main__')"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=python_env(), cwd=ROOT, timeout=timeout)


def digest(output):
    return re.search(r"weights digest ([0-9a-f]{64})", output).group(1)


def last_line(output):
    return output.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("straight") / "model"
    result = run(SCRIPT, [f"--model_dir={model_dir}", *ARGS])
    assert result.returncode == 0, result.stderr[-3000:]
    return model_dir, digest(result.stderr)


def test_file_size_limit_during_a_checkpoint(straight, tmp_path):
    model_dir = tmp_path / "model"
    limited = run(SCRIPT, [f"--model_dir={model_dir}", *ARGS], file_size_limit=LIMITED)
    assert limited.returncode == 1, limited.stderr[-3000:]
    assert "Traceback" not in limited.stderr
    assert last_line(limited.stderr) == (
        f"error: Could not write checkpoint ckpt-5 at {model_dir / 'checkpoints'}: File too "
        "large. The last good checkpoint is none (none was written yet); free space and run "
        "the same command again to resume from it.")
    assert not glob.glob(str(model_dir / "checkpoints" / "*_temp*"))
    assert (model_dir / "run_config.json").exists()

    resumed = run(SCRIPT, [f"--model_dir={model_dir}", *ARGS])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert digest(resumed.stderr) == straight[1]


def test_sigkill_during_a_checkpoint_write(straight, tmp_path):
    """Killed while `ckpt-N_temp/` exists (polled every millisecond; saves every step)."""
    model_dir = tmp_path / "model"
    args = [f"--model_dir={model_dir}", *ARGS[:-3], "--steps_per_loop=1",
            "--checkpoint_every=1", "--eval_every=0", "--keep_checkpoints=50"]
    # (The end equals `straight`'s, whose loop and checkpoint lengths differ: those do not
    # change the weights, and a mismatch fails below either way.)
    process = start(args, tmp_path / "log.txt")
    checkpoints = model_dir / "checkpoints"
    deadline, killed_in_write = time.time() + 600, False
    while process.poll() is None and time.time() < deadline:
        # After the first completed checkpoint, so that there is one to resume from (a
        # first save killed part-way starts afresh: test_faults.py covers it).
        if glob.glob(str(checkpoints / "ckpt-*_temp")) and os.path.exists(
                checkpoints / "checkpoint"):
            process.send_signal(signal.SIGKILL)
            killed_in_write = True
            break
        time.sleep(0.001)
    process.wait(timeout=60)
    assert killed_in_write, "the run ended before a save was caught part-way"
    assert glob.glob(str(checkpoints / "ckpt-*_temp"))  # What the kill left.

    resumed = run(SCRIPT, args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming from" in resumed.stderr
    assert not glob.glob(str(checkpoints / "ckpt-*_temp*"))
    assert digest(resumed.stderr) == straight[1]
    # Not only the weights: every model, optimizer and step variable of the last checkpoint.
    expected = checkpoint_values(str(straight[0] / "checkpoints" / "ckpt-20"))
    actual = checkpoint_values(str(checkpoints / "ckpt-20"))
    assert sorted(expected) == sorted(actual)
    for name, value in expected.items():
        np.testing.assert_array_equal(actual[name], value, err_msg=name)


def export(model_dir, export_dir, file_size_limit=None):
    return run(EXPORT_SCRIPT, [f"--model_dir={model_dir}", f"--export_dir={export_dir}",
                               "--nowarmup"], file_size_limit=file_size_limit)


def test_sigkill_and_file_size_limit_during_exports(straight, tmp_path):
    """Two faults of the exporter on one export directory (one process fewer than apart).

    SIGKILL at the worst moment: the whole SavedModel staged, not yet published. (Waiting for
    the staging directory to appear raced with fast exports, which could stage and publish
    between two polls.) The exporter runs with `files.publish_directory` replaced by a
    function that reports it has been reached and then waits to be killed. The rerun
    publishes version 1; then a file-size limit fails version 2, which leaves version 1 and
    names it, and a rerun publishes version 2."""
    export_dir = tmp_path / "exports"
    reached = tmp_path / "publish_reached"
    args = [EXPORT_SCRIPT, f"--model_dir={straight[0]}", f"--export_dir={export_dir}",
            "--nowarmup"]
    code = ("import pathlib, runpy, sys, time\n"
            "from irevnet_tf import files\n"
            "def publish_never(*args, **kwargs):\n"
            f"    pathlib.Path({str(reached)!r}).write_text('staged')\n"
            "    time.sleep(3600)\n"
            "files.publish_directory = publish_never\n"
            f"sys.argv = {args!r}\n"
            f"runpy.run_path({EXPORT_SCRIPT!r}, run_name='__main__')\n")
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=python_env(), cwd=ROOT)
    wait_for(reached.exists, process, timeout=300, what="the export's publishing step")
    staged = glob.glob(str(export_dir / ".tmp-export-*" / "saved_model.pb"))
    assert staged, "the SavedModel was not staged before publishing"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert not glob.glob(str(export_dir / "[0-9]*"))  # TF Serving sees no half version.
    first = export(straight[0], export_dir)
    assert first.returncode == 0, first.stderr[-3000:]
    assert last_line(first.stdout) == str(export_dir / "1")
    tf.saved_model.load(str(export_dir / "1"))
    killed_leftovers = set(os.listdir(export_dir)) - {"1"}
    assert all(name.startswith(".") for name in killed_leftovers), killed_leftovers

    failed = export(straight[0], export_dir, file_size_limit=100_000)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr, failed.stderr[-3000:]
    assert last_line(failed.stderr) == (
        f"error: Could not write export version 2 at {export_dir / '2'}: File too large. "
        f"Nothing was published; the newest complete version is {export_dir / '1'}. Free "
        "space and run the same command again.")
    # Nothing of the failed export's own is left: only version 1 and what the SIGKILL left
    # (its staging directory, which TF Serving never reads: it starts with a dot).
    assert set(os.listdir(export_dir)) == {"1"} | killed_leftovers
    again = export(straight[0], export_dir)
    assert again.returncode == 0 and last_line(again.stdout) == str(export_dir / "2")
    tf.saved_model.load(str(export_dir / "2"))


def start_workers(model_dir, tmp_path, label, args):
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(start([f"--model_dir={model_dir}", "--strategy=multi_worker", *args],
                               tmp_path / f"{label}{index}.txt",
                               TF_CONFIG=json.dumps(tf_config)))
    return processes


def test_multi_worker_run_and_a_lost_worker(tmp_path):
    """An uninterrupted two-worker run (identical weights on both workers, both see 2
    replicas, evaluation, the last checkpoint, model.keras, no worker scratch left); then a
    worker SIGKILLed mid-loop stops the other with one line, and rerunning both resumes and
    ends with the uninterrupted run's weights."""
    args = [*DIGITS, "--deterministic", "--train_steps=30", "--steps_per_loop=5",
            "--checkpoint_every=10", "--eval_every=10"]
    straight_dir = tmp_path / "straight"
    for process in start_workers(straight_dir, tmp_path, "straight", args):
        assert process.wait(timeout=900) == 0
    straight_logs = [(tmp_path / f"straight{index}.txt").read_text() for index in range(2)]
    expected = digest(straight_logs[0])
    assert digest(straight_logs[1]) == expected
    assert all("2 replica(s)" in log for log in straight_logs)
    assert tf.train.latest_checkpoint(str(straight_dir / "checkpoints")).endswith("ckpt-30")
    assert os.path.exists(straight_dir / "model.keras")
    assert not os.path.exists(straight_dir / ".worker_tmp")
    assert re.search(r"evaluation at step 30: top-1", straight_logs[0]), straight_logs[0][-2000:]

    model_dir = tmp_path / "model"
    processes = start_workers(model_dir, tmp_path, "killed", args)
    wait_for(lambda: tf.train.latest_checkpoint(str(model_dir / "checkpoints")), processes[0],
             what="the first checkpoint")
    processes[1].send_signal(signal.SIGKILL)
    killed = time.time()
    assert processes[0].wait(timeout=120) == 1
    seconds = time.time() - killed
    log = (tmp_path / "killed0.txt").read_text()
    assert "Traceback" not in log
    line = last_line(log)
    assert re.fullmatch(r"error: Lost worker 1 of the multi-worker run \(.+\); worker 0 stopped "
                        r"too\. Restart every worker with the same command to resume from "
                        rf"{re.escape(str(model_dir / 'checkpoints'))}/ckpt-\d+\.", line), line
    assert seconds < 60, seconds

    for process in start_workers(model_dir, tmp_path, "resumed", args):
        assert process.wait(timeout=900) == 0
    logs = [(tmp_path / f"resumed{index}.txt").read_text() for index in range(2)]
    assert all("Resuming from" in text for text in logs)
    assert [digest(text) for text in logs] == [expected, expected]
