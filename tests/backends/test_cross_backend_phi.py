"""benchmarks/cross_backend_phi.py runs on a tiny model, and its counts are the files' own.

The script runs one child per Keras backend; here on irevnet_tiny, batch 2, float32. The
test then recounts, from the .npy files the children left, the image grid points that each
decode got wrong (against `round(x * 2**18)` of the images) and checks the script's table
and JSON against its own counts; and that each backend decodes its own Phis exactly.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers.processes import ROOT, python_env, require_backends

BACKENDS = ("tensorflow", "jax", "torch")


@pytest.mark.slow
def test_cross_backend_phi_on_a_tiny_model(tmp_path):
    require_backends(*BACKENDS)
    out_dir, json_path = tmp_path / "files", tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.cross_backend_phi", "--configs=irevnet_tiny",
         "--precisions=float32", "--batch_size=2", "--calibration_steps=2",
         f"--out_dir={out_dir}", f"--json_out={json_path}"],
        cwd=ROOT, env=python_env(), capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    with open(json_path, encoding="utf-8") as handle:
        results = json.load(handle)
    assert sorted(results["machines"]) == sorted(BACKENDS)
    for backend, record in results["machines"].items():
        assert record["keras_backend"] == backend

    images = np.load(out_dir / "images.irevnet_tiny.npy").astype(np.float64)
    assert images.shape == (2, 32, 32, 3)
    grid = np.round(images * 2.0 ** 18)
    entries = {(e["encoder"], e["decoder"]): e for e in results["decode"]}
    assert len(entries) == len(BACKENDS) ** 2
    for encoder in BACKENDS:
        for decoder in BACKENDS:
            decoded = np.load(out_dir / f"decoded.irevnet_tiny.float32.{encoder}.by.{decoder}.npy")
            error = np.abs(np.round(decoded.astype(np.float64) * 2.0 ** 18) - grid)
            differing = int(np.sum(error != 0))
            assert entries[encoder, decoder]["differing"] == differing
            assert entries[encoder, decoder]["max_steps"] == int(error.max())
            assert entries[encoder, decoder]["total"] == grid.size
            if encoder == decoder:
                assert differing == 0, encoder  # Each backend round-trips its own Phi.
    phis = {b: np.load(out_dir / f"phi.irevnet_tiny.float32.{b}.npy") for b in BACKENDS}
    for entry in results["phi"]:
        first, second = entry["backends"]
        assert entry["differing"] == int(np.sum(phis[first] != phis[second]))
    # The printed table has a row per encoder, and the kept files are where it says.
    rows = [line for line in result.stdout.splitlines() if line.startswith("| irevnet_tiny")]
    assert len(rows) == len(BACKENDS) + len(results["phi"])
    assert os.path.exists(out_dir / "irevnet_tiny.keras")
