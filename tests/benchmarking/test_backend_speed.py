"""benchmarks/backend_speed.py: the per-backend summary (fast) and the script end to end
(one process per backend: slow)."""

import json
import subprocess
import sys

import pytest

from irevnet_tf.benchmarking import backend_speed
from tests.helpers.processes import ROOT, python_env, require_backends


def _line(backend, round_number, encode, train=None, **extra):
    line = {"backend": backend, "config": "c", "batch_size": 2, "precision": "float32",
            "round": round_number, "train_step": "s", "encode_wall_s": encode,
            "encode_cpu_s": encode}
    if train is not None:
        line.update(plain_train_step_wall_s=train, plain_train_step_cpu_s=train)
    line.update(extra)
    return line


def test_summary_gives_same_round_speed_over_tensorflow_and_notes():
    lines = [_line("tensorflow", 0, 1.0, 2.0), _line("jax", 0, 0.5, 4.0),
             _line("tensorflow", 1, 3.0, 2.0), _line("jax", 1, 1.0, 4.0),
             _line("torch", 0, 2.0, plain_train_step_error="RuntimeError: boom",
                   reversible_train_step_skipped="no irevnet_tf/backends/torch_gradient.py")]
    rows = {(r["path"], r["backend"]): r for r in backend_speed.summarize(lines)}
    # Per round TF / JAX: 2 and 3; their median 2.5 (not the ratio of the medians, 2/0.75).
    assert rows[("encode", "jax")]["ratios_cpu"] == [2.0, 3.0]
    assert rows[("encode", "jax")]["speed_over_tensorflow_cpu"] == 2.5
    assert rows[("encode", "tensorflow")]["speed_over_tensorflow_wall"] == 1.0
    assert rows[("plain_train_step", "jax")]["speed_over_tensorflow_wall"] == 0.5
    assert rows[("encode", "torch")]["ratios_wall"] == [0.5]
    assert rows[("plain_train_step", "torch")]["note"] == "RuntimeError: boom"
    assert rows[("plain_train_step", "torch")]["wall_s"] is None
    assert "torch_gradient.py" in rows[("reversible_train_step", "torch")]["note"]
    text = backend_speed.table(backend_speed.summarize(lines))
    assert "| c, 2, float32 | encode | jax | 0.75 | 0.75 | 2.5x | 2.5x | 2, 3 |" in text
    assert "RuntimeError: boom" in text


def test_gradient_module_lookup_does_not_need_the_backend():
    assert backend_speed.has_memory_saving_gradient("tensorflow")
    assert not backend_speed.has_memory_saving_gradient("no_such_backend")


def test_test_batch_is_backend_free_and_shaped():
    images, labels = backend_speed.test_batch(32, 32, 3, 2)
    assert images.shape == (2, 32, 32, 3) and images.dtype.name == "float32"
    assert labels.tolist() == [0, 0]


@pytest.mark.slow
def test_script_runs_every_backend_on_a_tiny_model(tmp_path):
    """One round, one repeat, irevnet_tiny: a time (or a reason) for every backend and path.

    Slow: three fresh processes, each importing its backend and compiling four functions
    (JAX's training step alone takes 20 s to compile on the project's 2-core CPU)."""
    require_backends("jax", "torch")
    output = tmp_path / "speed.json"
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.backend_speed", "--configs=irevnet_tiny",
         "--batch_sizes=2", "--rounds=1", "--repeats=1", "--warmup=1", f"--output={output}"],
        cwd=ROOT, env=python_env(), capture_output=True, text=True, timeout=900, check=False)
    assert completed.returncode == 0, completed.stderr[-4000:]
    rows = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]
    by_key = {(r["path"], r["backend"]): r for r in rows}
    for backend in backend_speed.BACKENDS:
        for path in ("encode", "decode", "plain_train_step"):
            assert by_key[(path, backend)]["cpu_s"] > 0, by_key[(path, backend)]
        reversible = by_key[("reversible_train_step", backend)]
        if backend_speed.has_memory_saving_gradient(backend):
            assert reversible["cpu_s"] > 0, reversible
        else:
            assert f"{backend}_gradient.py" in reversible["note"]
    assert by_key[("encode", "tensorflow")]["speed_over_tensorflow_cpu"] == 1.0
    assert "| irevnet_tiny, 2, float32 | encode | jax |" in completed.stdout
    assert "Machine:" in completed.stdout
    saved = json.loads(output.read_text())
    assert len(saved["lines"]) == 3 and saved["machine"]["cpu"]
