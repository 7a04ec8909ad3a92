"""End-to-end runs of the benchmark scripts on a tiny model (subprocesses, hence slow)."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers.processes import ROOT, python_env


def run_script(name, *flags):
    env = python_env()
    completed = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", name), *flags],
                               env=env, capture_output=True, text=True, timeout=900,
                               check=False)
    assert completed.returncode == 0, completed.stderr[-4000:]
    return completed.stdout


def run_module_lines(module, *flags):
    """Runs `python -m benchmarks.<module> flags...` from the repository root; its JSON lines."""
    env = python_env()
    completed = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *flags],
                               cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
                               check=False)
    assert completed.returncode == 0, completed.stderr[-4000:]
    return [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]


@pytest.mark.slow
def test_train_memory_script(tmp_path):
    output = tmp_path / "results.json"
    stdout = run_script("train_memory.py", "--config=irevnet_tiny", "--image_size=32",
                        "--batch_size=4", "--blocks_multiplier=1", "--warmup=1", "--repeats=1",
                        "--memory_repeats=1", f"--output={output}")
    results = json.loads(output.read_text())["results"]
    assert [r["reversible"] for r in results] == [True, False]
    for result in results:
        assert result["tf_allocator_activation_bytes"] is not None
        assert result["steady_peak_bytes"] > result["rss_model_built_bytes"]
    assert "reversible activations / plain" in stdout


@pytest.mark.slow
def test_gradient_error_script(tmp_path):
    output = tmp_path / "errors.json"
    stdout = run_script("gradient_error.py", "--config=irevnet_tiny", "--image_size=32",
                        "--batch_size=2", f"--output={output}")
    result = json.loads(output.read_text())
    assert result["reversible"]["relative_error"] < 1e-5
    assert result["reversible_vs_plain"]["relative_error"] < 1e-6
    assert "reversible vs plain" in stdout


@pytest.mark.slow
def test_pytorch_reference_script_computes_the_same_function():
    pytest.importorskip("torch")
    results = run_module_lines("pytorch_reference", "--configs=irevnet_tiny,irevnet_small",
                               "--batch_sizes=4,4", "--repeats=1", "--train_steps=1",
                               "--calibration_steps=2")
    assert [r["config"] for r in results] == ["irevnet_tiny", "irevnet_small"]
    for result in results:
        # The PyTorch model got the Keras weights: same Phi, and both invert it.
        assert result["phi_max_rel_gap"] < 1e-5
        assert result["tf_round_trip_max_rel_error"] < 1e-5
        assert result["torch_round_trip_max_rel_error"] < 1e-5
        for key in ("tf_encode", "torch_encode", "tf_decode", "torch_decode", "torch_train",
                    "tf_reversible_train", "tf_plain_train"):
            assert result[f"{key}_images_per_s"] > 0


@pytest.mark.slow
def test_round_trip_error_script():
    env = python_env()
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.round_trip_error", "--configs=irevnet_tiny",
         "--batch_sizes=2", "--calibration_steps=2", "--precision=mixed_bfloat16"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert completed.returncode == 0, completed.stderr[-4000:]
    results = [json.loads(line) for line in completed.stdout.splitlines()
               if line.startswith("{")]
    assert [r["config"] for r in results] == ["irevnet_tiny"]
    result = results[0]
    assert result["precision"] == "mixed_bfloat16" and result["compute_dtype"] == "bfloat16"
    assert result["bit_exact"] and result["differing_values"] == 0
    assert result["batch_independent"]
    assert 0.0 < result["input_relative_error"] < 1e-6
    assert result["range_headroom"] > 100
    assert 0.0 < result["smallest_moving_variance"] <= 1.0


@pytest.mark.slow
def test_compare_checkouts_alternates_and_reports_ratios():
    """This checkout against itself, one round: each side measured once, ratio near 1."""
    results = run_module_lines("compare_checkouts", f"--baseline={ROOT}", "--rounds=1",
                               "--configs=irevnet_tiny", "--batch_sizes=4", "--repeats=1")
    assert [r["path"] for r in results] == ["encode", "decode"]
    for result in results:
        for clock in ("wall", "cpu"):
            assert len(result[f"ratios_{clock}"]) == 1
            assert result[f"baseline_{clock}_s"] > 0 and result[f"candidate_{clock}_s"] > 0
        # Same code on both sides: only load moves the CPU-time ratio, and not by much.
        assert 0.33 < result["candidate_speed_over_baseline_cpu"] < 3, result
        assert "cpu" in result["machine"]


def test_compare_checkouts_names_a_bad_checkout(tmp_path):
    env = python_env()
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.compare_checkouts", f"--baseline={tmp_path}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert completed.returncode != 0
    assert f"--baseline='{tmp_path}' is not an irevnet_tf checkout" in completed.stderr
