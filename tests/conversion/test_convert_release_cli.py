"""export/convert_release.py end to end in subprocesses, on the tiny configuration, with the
committed release-format fixtures (no torch)."""

import os
import subprocess
import sys

from irevnet_tf.conversion import release
from irevnet_tf import model_files as model_dir
from tests.conversion import fixtures
from tests.helpers.processes import ROOT, python_env

SCRIPT = os.path.join(ROOT, "export", "convert_release.py")


def _run(*flags):
    env = python_env(TF_CPP_MIN_LOG_LEVEL=3)
    return subprocess.run([sys.executable, SCRIPT, *flags], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def _check_outputs(output, fixture):
    # Against the release's logits, computed by its torch model when the fixture was written.
    model, run_config = model_dir.restore_model(str(output))
    images = fixtures.release_pixels(fixture.reference["images"])  # The model takes pixels.
    fixtures.assert_relative_close(model(images).numpy(), fixture.reference["logits_float64"],
                                   what="logits")
    return run_config


def test_cli_converts_and_refuses_to_overwrite(tmp_path):
    fixture = fixtures.release("tiny")
    state = fixture.state
    output = tmp_path / "models" / "tiny.keras"

    result = _run(f"--checkpoint={fixture.path}", f"--output={output}", "--config=irevnet_tiny")
    assert result.returncode == 0, result.stderr
    mapped = sum(not name.endswith("num_batches_tracked") for name in state)
    assert f"Mapped {mapped} checkpoint entries" in result.stderr
    trainable = sum(v.size for k, v in state.items()
                    if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert f"{trainable:,} trainable parameters" in result.stderr
    run_config = _check_outputs(output, fixture)
    assert (run_config.config_name, run_config.dataset) == ("irevnet_tiny", "imagenet2012")

    before = output.read_bytes()
    result = _run(f"--checkpoint={fixture.path}", f"--output={output}", "--config=irevnet_tiny")
    assert result.returncode == 1
    assert "exists" in result.stderr and "--overwrite" in result.stderr
    assert "Traceback" not in result.stderr
    assert output.read_bytes() == before


def test_cli_overwrite_replaces_the_output(tmp_path):
    old, new = fixtures.release("tiny"), fixtures.release("tiny-legacy")
    assert new.metadata["format"] == "legacy"  # The legacy format through the CLI.
    output = tmp_path / "tiny.keras"
    release.convert_release(old.path, output, config_name="irevnet_tiny")
    result = _run(f"--checkpoint={new.path}", f"--output={output}", "--config=irevnet_tiny",
                  "--overwrite")
    assert result.returncode == 0, result.stderr
    _check_outputs(output, new)


def test_cli_refuses_another_architecture(tmp_path):
    fixture = fixtures.release("tiny")
    output = tmp_path / "never.keras"
    # One block more in the second stage: another architecture.
    result = _run(f"--checkpoint={fixture.path}", f"--output={output}", "--config=irevnet_tiny",
                  '--overrides={"blocks": [1, 2, 1]}')
    assert result.returncode == 1
    assert "another i-RevNet configuration" in result.stderr
    assert "Nothing written" in result.stderr
    assert not output.exists()
    assert not os.path.exists(str(output) + ".run_config.json")
