"""The quickstart end to end on a short run: trains, exports, checks the inverse, analyses."""

import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_quickstart_command_writes_everything_it_promises(tmp_path):
    output = tmp_path / "quickstart"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    completed = subprocess.run(
        [sys.executable, "-m", "irevnet_tf.quickstart", f"--output_dir={output}",
         "--train_epochs=1"], cwd=str(tmp_path), env=env, capture_output=True, text=True,
        timeout=900)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "Held-out accuracy" in completed.stdout
    summary = json.loads((output / "quickstart_summary.json").read_text())
    assert summary["held_out_examples"] == 359
    assert summary["exported_round_trip_max_error"] <= 1e-5
    assert 0.0 <= summary["held_out_top1"] <= 1.0
    assert os.path.exists(os.path.join(summary["export"], "saved_model.pb"))
    for name in ("reconstructions.png", "interpolations.png", "separation.csv"):
        assert (output / "analysis" / name).exists(), name
    image = tf.io.decode_png(tf.io.read_file(str(output / "analysis" / "reconstructions.png")))
    assert image.shape[0] > 32 and image.shape[1] > 32
