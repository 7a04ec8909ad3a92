"""irevnet_tf.cli: noise filters that drop only TensorFlow's machine-specific lines, path flags
that refuse the wrong kind of path with one line naming the flag, and progress lines."""

import logging
import os
import subprocess
import sys

import pytest

from irevnet_tf import cli, progress_log
from tests.helpers.processes import ROOT, python_env


# Lines TensorFlow 2.21 prints on a CPU-only machine (copied from a real run).
NOISE = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1796023663.354455    3182 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
I0000 00:00:1796023663.534442    3182 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available CPU instructions in performance-critical operations.
To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.
E0000 00:00:1796023704.915083    4037 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)
"""
REAL = """\
E0000 00:00:1796023704.915083    4037 cuda_platform.cc:52] failed call to cuInit: CUDA_ERROR_OUT_OF_MEMORY
W0000 00:00:1796023704.915083    4037 some_op.cc:12] a real warning
"""


def test_native_filter_drops_only_the_known_noise():
    assert cli._without_noise(NOISE) == ""
    assert cli._without_noise(NOISE + REAL) == REAL


def test_python_filter_drops_only_the_known_noise():
    def record(message):
        return logging.LogRecord("absl", logging.INFO, __file__, 1, message, (), None)

    drop = cli._DropNoise()
    assert not drop.filter(record("Function `_encode` contains input name(s) resource with "
                                  "unsupported characters which will be renamed to x_1"))
    assert not drop.filter(record("Sharding callback duration: 93 microseconds"))
    assert not drop.filter(record("Assets written to: /tmp/x/.tmp-export-1/assets"))
    assert drop.filter(record("Exported version 1 to /tmp/x/1"))
    assert drop.filter(record("Assets written to the export are checked"))


def test_directory_flags_refuse_files(tmp_path):
    existing_file = tmp_path / "file"
    existing_file.write_text("x")
    cli.check_directory_flag("output_dir", str(tmp_path / "new" / "dir"))  # May not exist.
    cli.check_directory_flag("output_dir", str(tmp_path))
    cli.check_directory_flag("output_dir", "gs://bucket/run")  # Left to TensorFlow.
    with pytest.raises(cli.PathFlagError, match=f"^--output_dir={existing_file} is a file"):
        cli.check_directory_flag("output_dir", str(existing_file))
    with pytest.raises(cli.PathFlagError, match=f"{existing_file} is a file"):
        cli.check_directory_flag("export_dir", str(existing_file / "below"))
    assert sorted(os.listdir(tmp_path)) == ["file"]  # Nothing written.


def test_file_flags_refuse_directories(tmp_path):
    cli.check_file_flag("output", str(tmp_path / "new.keras"))
    with pytest.raises(cli.PathFlagError, match=f"^--output={tmp_path} is a directory"):
        cli.check_file_flag("output", str(tmp_path))
    with pytest.raises(cli.PathFlagError, match="does not exist"):
        cli.check_file_flag("checkpoint", str(tmp_path / "missing.pth"), must_exist=True)


def test_work_progress_reports_amount_rate_and_time_left():
    now = [0.0]
    progress = progress_log.WorkProgress("evaluation", 1000, min_interval=10.0,
                                         clock=lambda: now[0])
    now[0] = 5.0
    assert progress.update(100) is None  # Too soon after the start.
    now[0] = 20.0
    assert progress.update(400) == ("evaluation: 400/1000 images (40.0%)  20.0 images/s  "
                                    "30s left")
    now[0] = 21.0
    assert progress.update(1000).startswith("evaluation: 1000/1000 images (100.0%)")
    slow = progress_log.WorkProgress("measures", 4, "representations", min_interval=0.0,
                                     clock=lambda: now[0])
    now[0] += 30.0
    assert "30.0 s each" in slow.update(1)


def test_quickstart_refuses_an_output_dir_that_is_a_file(tmp_path):
    from irevnet_tf import quickstart

    path = tmp_path / "output"
    path.write_text("x")
    with pytest.raises(cli.PathFlagError, match="--output_dir="):
        quickstart.run_quickstart(str(path))
    assert sorted(os.listdir(tmp_path)) == ["output"]


def test_trainer_script_is_quiet_and_fails_in_one_line(tmp_path):
    """A CPU-only run of the trainer prints no TensorFlow chatter and no error-level line;
    a --model_dir that is a file gives one line naming the flag, and nothing is written."""
    path = tmp_path / "model"
    path.write_text("x")
    env = python_env(TF_CPP_MIN_LOG_LEVEL=None)  # The package's default, not the tests'.
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "trainers", "train_imagenet.py"),
         f"--model_dir={path}", "--dataset=digits", "--config=irevnet_tiny"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: --model_dir={path} is a file; it must name a directory (created if "
        "missing). Nothing was written."], result.stderr
    assert sorted(os.listdir(tmp_path)) == ["model"] and path.read_text() == "x"


def test_trainer_help_lists_its_flags_by_group():
    env = python_env()
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "trainers", "train_imagenet.py"), "--help"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    from irevnet_tf.training import flags as training_flags

    for title, names in training_flags.groups():
        assert f"  {title}: --{names[0]}" in result.stdout
        for name in names:
            assert f"\n  --{name}:" in result.stdout or f"\n  --[no]{name}:" in result.stdout
    assert "--tpu=local \\\n" in result.stdout  # The example keeps its line break.
