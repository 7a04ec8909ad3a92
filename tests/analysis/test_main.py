"""The command line, run as users run it: `python -m irevnet_tf.analysis` in a subprocess."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers.processes import ROOT, python_env


def _run(*flags):
    environment = python_env()
    return subprocess.run([sys.executable, "-m", "irevnet_tf.analysis", *flags],
                          capture_output=True, text=True, env=environment, timeout=600,
                          cwd=ROOT)


@pytest.mark.slow
def test_command_writes_the_analyses(tiny_model_dir, tmp_path):
    output_dir = str(tmp_path / "out")
    completed = _run(f"--model={tiny_model_dir}", f"--output_dir={output_dir}",
                     "--num_examples=30", "--pairs=2", "--steps=4", "--level=block",
                     "--analyses=reconstruction,interpolation,separation", "--exact_grids")
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary_path = json.loads(completed.stdout.strip().splitlines()[-1])["summary_json"]
    assert summary_path == os.path.join(output_dir, "summary.json")
    with open(summary_path, encoding="utf-8") as handle:
        summary = json.load(handle)
    assert len(summary["interpolation"]["strips"]) == 2
    for name in ("reconstructions.png", "interpolations.png", "separation.csv"):
        assert os.path.exists(os.path.join(output_dir, name))

    bad = _run(f"--model={tiny_model_dir}", f"--output_dir={output_dir}2",
               "--analyses=reconstruction,pictures")
    assert bad.returncode != 0
    assert "accepted: reconstruction, interpolation, separation" in bad.stderr
    assert not os.path.exists(output_dir + "2")
    # It says what it wrote: every file in the output directory, by path.
    for name in os.listdir(output_dir):
        assert os.path.join(output_dir, name) in completed.stdout, name

    # An --output_dir that is a file: one line naming the flag, nothing written.
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    refused = _run(f"--model={tiny_model_dir}", f"--output_dir={blocker}")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1].startswith(
        f"error: --output_dir={blocker} is a file"), refused.stderr[-2000:]
    assert blocker.read_text() == "x"
