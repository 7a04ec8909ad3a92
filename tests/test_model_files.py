"""Model artifacts (irevnet_tf/model_files.py): loading a model never imports the trainer, and a
failed `.keras` write leaves the earlier file and its sidecar as they were."""

import errno
import os
import subprocess
import sys

import keras
import pytest

from irevnet_tf import build_irevnet, model_files
from irevnet_tf.files import WriteError
from tests.helpers.processes import ROOT, python_env



def test_serving_conversion_and_analysis_load_models_without_the_trainer():
    code = ("import sys; import irevnet_tf.serving.export, irevnet_tf.serving.client_inputs, "
            "irevnet_tf.conversion.release, irevnet_tf.analysis.runner, "
            "irevnet_tf.analysis.invertible_model, irevnet_tf.model_files; "
            "print(sorted(m for m in sys.modules if m.startswith('irevnet_tf.training')))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, env=python_env(pythonpath=ROOT), timeout=300)
    assert output.returncode == 0, output.stderr[-2000:]
    assert output.stdout.strip().splitlines()[-1] == "[]"


def test_failed_keras_write_keeps_the_earlier_pair(tmp_path, monkeypatch):
    path = tmp_path / "m.keras"
    model = build_irevnet("irevnet_tiny")
    model_files.save_keras_model(model, model_files.RunConfig("irevnet_tiny", dataset="old"),
                                 str(path))
    before = path.read_bytes(), (tmp_path / "m.keras.run_config.json").read_text()

    def full(model, filepath, *args, **kwargs):
        with open(filepath, "wb") as handle:
            handle.write(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(keras.saving, "save_model", full)
    with pytest.raises(WriteError, match=rf"^Could not write m\.keras at {path}: No space left"):
        model_files.save_keras_model(model, model_files.RunConfig("irevnet_tiny", dataset="new"),
                                     str(path))
    assert (path.read_bytes(), (tmp_path / "m.keras.run_config.json").read_text()) == before
    assert sorted(os.listdir(tmp_path)) == ["m.keras", "m.keras.run_config.json"]
