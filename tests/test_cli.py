"""irevnet_tf.cli: noise filters that drop only TensorFlow's machine-specific lines, path flags
that refuse the wrong kind of path with one line naming the flag, and progress lines."""

import importlib
import logging
import os
import subprocess
import sys

import pytest

from irevnet_tf import cli, progress_log
from tests.helpers.processes import ROOT, python_env


# What TensorFlow 2.21 prints while its shared libraries load, before its logging reads any
# setting (irevnet_tf/environment.py): no environment variable silences these.
WHILE_LOADING = ("WARNING: All log messages before absl::InitializeLog() is called",
                 "port.cc:", "cudart_stub.cc:")


def _after_loading(stderr):
    return [line for line in stderr.strip().splitlines()
            if not any(marker in line for marker in WHILE_LOADING)]


def test_import_is_the_same_however_python_started(monkeypatch):
    """`import irevnet_tf` gives every public name whatever sys.argv says (`python -m ...`
    imports the package while sys.argv[0] is "-m")."""
    import irevnet_tf

    monkeypatch.setattr(sys, "argv", ["-m"])
    for name in irevnet_tf.__all__:
        monkeypatch.delitem(vars(irevnet_tf), name)
    importlib.reload(irevnet_tf)
    assert [name for name in irevnet_tf.__all__ if name not in vars(irevnet_tf)] == []


def test_tensorflow_log_level_default_keeps_the_users_setting(monkeypatch):
    from irevnet_tf import environment

    assert environment.set_tensorflow_defaults({"TF_CPP_MIN_LOG_LEVEL": "0"}) == "0"
    monkeypatch.setattr(environment, "has_gpu_driver", lambda: False)
    settings = {}
    assert environment.set_tensorflow_defaults(settings) == "3"  # cuInit's error line off.
    assert settings == {"TF_CPP_MIN_LOG_LEVEL": "3"}
    monkeypatch.setattr(environment, "has_gpu_driver", lambda: True)
    assert environment.set_tensorflow_defaults({}) == "1"  # GPU errors stay visible.


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
    """A CPU-only run of the trainer prints no TensorFlow chatter after TensorFlow's libraries
    have loaded, and no error-level line; a --model_dir that is a file gives one line naming
    the flag, and nothing is written."""
    path = tmp_path / "model"
    path.write_text("x")
    env = python_env(TF_CPP_MIN_LOG_LEVEL=None)  # The package's default, not the tests'.
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "trainers", "train_imagenet.py"),
         f"--model_dir={path}", "--dataset=digits", "--config=irevnet_tiny"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert result.returncode == 2
    assert _after_loading(result.stderr) == [
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
