"""The JAX recipe of docs/backends.md ("JAX on TPUs") runs: on CPU, with two fake devices.

The recipe's code block is taken from the document and run as it stands in a JAX child
process with `XLA_FLAGS=--xla_force_host_platform_device_count=2`, so the document cannot
drift from code that runs. It trains a few `DataParallel` steps under mixed_bfloat16 on the
embedded digits, round-trips a batch and saves a `.keras` file, which this (TensorFlow)
process then loads.
"""

import os
import re
import subprocess
import sys

import pytest

from tests.helpers.processes import ROOT, python_env, require_backends

DOC = os.path.join(ROOT, "docs", "backends.md")


def recipe():
    with open(DOC, encoding="utf-8") as handle:
        text = handle.read()
    section = text[text.index("## JAX on TPUs"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_tpu_recipe_runs_on_two_cpu_devices(tmp_path):
    require_backends("jax")
    import keras

    result = subprocess.run(
        [sys.executable, "-c", recipe()], cwd=str(tmp_path), capture_output=True, text=True,
        timeout=900, check=False,
        env=python_env(KERAS_BACKEND="jax",
                       XLA_FLAGS="--xla_force_host_platform_device_count=2"))
    assert result.returncode == 0, result.stderr[-4000:]
    devices = re.search(r"devices: (\[.*\])", result.stdout).group(1)
    assert devices.count("cpu:") == 2, devices  # Both fake devices hold the model.
    error, step = map(float, re.search(r"largest \|decode\(encode\(x\)\) - x\|: (\S+) grid "
                                       r"step in pixels: (\S+)", result.stdout).groups())
    # The images' own quantisation: half a grid step, plus float32 rounding of pixels.
    assert error <= step / 2 + 255 * 2.0 ** -23
    model = keras.saving.load_model(str(tmp_path / "digits_jax.keras"))
    assert model.dtype_policy.name == "mixed_bfloat16"
    assert model.image_shape == (32, 32, 1)
