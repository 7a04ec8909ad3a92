"""The quickstart end to end, exactly as README.md gives it: trains its recipe, reaches the
promised accuracy, exports, checks the inverse, analyses."""

import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from tests.helpers.processes import python_env


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_quickstart_command_keeps_its_promises(tmp_path):
    """README's first command at its defaults (the digits recipe, 8 epochs): >= 96 % on all
    359 held-out digits (README gives the measured figure), an export whose round trip is
    exact up to the input's quantisation, and the analyses."""
    output = tmp_path / "quickstart"
    env = python_env()
    completed = subprocess.run(
        [sys.executable, "-m", "irevnet_tf.quickstart", f"--output_dir={output}"],
        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=1500)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "Held-out accuracy" in completed.stdout
    summary = json.loads((output / "quickstart_summary.json").read_text())
    assert summary["held_out_examples"] == 359
    assert summary["exported_round_trip_max_error"] <= 1e-5
    assert summary["held_out_top1"] >= 0.96
    assert os.path.exists(os.path.join(summary["export"], "saved_model.pb"))
    for name in ("reconstructions.png", "interpolations.png", "separation.csv"):
        assert (output / "analysis" / name).exists(), name
    # One round trip, reported one way: the analysis decodes the same held-out digits
    # through the same export, so it must find what the quickstart's own check found.
    analysed = json.loads((output / "analysis" / "reconstructions.json").read_text())
    assert analysed["max_relative_error"] == pytest.approx(
        summary["exported_round_trip_max_error"], rel=1e-5)
    # Every figure written is named on the "figures:" line (no unlabelled strips beside).
    analyses_line = next(line for line in completed.stdout.splitlines()
                         if line.startswith("Analyses:"))
    pngs = [name for name in os.listdir(output / "analysis") if name.endswith(".png")]
    assert pngs and all(name in analyses_line for name in pngs), (pngs, analyses_line)
    image = tf.io.decode_png(tf.io.read_file(str(output / "analysis" / "reconstructions.png")))
    assert image.shape[0] > 32 and image.shape[1] > 32
