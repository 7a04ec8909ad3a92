"""export/convert_release.py end to end in subprocesses, on the tiny configuration."""

import os
import subprocess
import sys

import numpy as np
import pytest

from irevnet_tf.conversion import release
from irevnet_tf import model_files as model_dir
from tests.conversion import release_reference as ref

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "export", "convert_release.py")
# The release's naming scheme on irevnet_tiny: stride-1 first stage, mult 2.
TINY = ref.Architecture(blocks=(1, 1, 1), strides=(1, 2, 2), channels=(6, 24, 96), mult=2,
                        num_classes=10, image_size=32)


def _run(*flags):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, SCRIPT, *flags], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def _check_outputs(output, state):
    model, run_config = model_dir.restore_model(str(output))
    images = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    want_logits, _ = ref.release_forward(state, TINY, images)
    np.testing.assert_allclose(model(images).numpy(), want_logits, rtol=1e-4, atol=1e-4)
    return run_config


def test_cli_converts_and_refuses_to_overwrite(tmp_path):
    pytest.importorskip("torch")
    state = ref.random_state_dict(ref.release_entries(TINY), seed=1)
    path = tmp_path / "release.pth.tar"
    ref.save_with_torch(path, state)
    output = tmp_path / "models" / "tiny.keras"

    result = _run(f"--checkpoint={path}", f"--output={output}", "--config=irevnet_tiny")
    assert result.returncode == 0, result.stderr
    mapped = sum(not name.endswith("num_batches_tracked") for name in state)
    assert f"Mapped {mapped} checkpoint entries" in result.stderr
    trainable = sum(v.size for k, v in state.items()
                    if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert f"{trainable:,} trainable parameters" in result.stderr
    run_config = _check_outputs(output, state)
    assert (run_config.config_name, run_config.dataset) == ("irevnet_tiny", "imagenet2012")

    before = output.read_bytes()
    result = _run(f"--checkpoint={path}", f"--output={output}", "--config=irevnet_tiny")
    assert result.returncode == 1
    assert "exists" in result.stderr and "--overwrite" in result.stderr
    assert "Traceback" not in result.stderr
    assert output.read_bytes() == before


def test_cli_overwrite_replaces_the_output(tmp_path):
    pytest.importorskip("torch")
    old, new = (ref.random_state_dict(ref.release_entries(TINY), seed=seed) for seed in (2, 3))
    old_path, new_path = tmp_path / "old.pth", tmp_path / "new.pth"
    ref.save_with_torch(old_path, old)
    ref.save_with_torch(new_path, new, legacy=True)  # The legacy format through the CLI.
    output = tmp_path / "tiny.keras"
    release.convert_release(old_path, output, config_name="irevnet_tiny")
    result = _run(f"--checkpoint={new_path}", f"--output={output}", "--config=irevnet_tiny",
                  "--overwrite")
    assert result.returncode == 0, result.stderr
    _check_outputs(output, new)


def test_cli_refuses_another_architecture(tmp_path):
    pytest.importorskip("torch")
    state = ref.random_state_dict(ref.release_entries(TINY), seed=3)
    path = tmp_path / "tiny.pth"
    ref.save_with_torch(path, state)
    output = tmp_path / "never.keras"
    # One block more in the second stage: another architecture.
    result = _run(f"--checkpoint={path}", f"--output={output}", "--config=irevnet_tiny",
                  '--overrides={"blocks": [1, 2, 1]}')
    assert result.returncode == 1
    assert "another i-RevNet configuration" in result.stderr
    assert "Nothing written" in result.stderr
    assert not output.exists()
    assert not os.path.exists(str(output) + ".run_config.json")
