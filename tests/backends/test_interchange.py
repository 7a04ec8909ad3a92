"""`.keras` files are the interchange between Keras backends: a file written on TensorFlow,
JAX or PyTorch loads on each of them with bit-equal weights and logits within 1e-5.

Each backend runs in its own child process (`KERAS_BACKEND` is read once per process):
three writers train a small IRevNet one step from randomised batch norms (so that the
moving statistics and every weight are far from their initial values) and save it with
`model_files.save_keras_model`; then three readers load every file with
`model_files.restore_model`. The writers' own weights and logits are the reference; the
compile configuration's `jit_compile` is resolved on the reading backend, as a model
compiled there is.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers.processes import ROOT, python_env, require_backends

BACKENDS = ("tensorflow", "jax", "torch")
CHILD = os.path.join(ROOT, "tests", "backends", "interchange_child.py")


def _failure(backend, directory, step):
    with open(directory / f"{backend}.stderr", encoding="utf-8", errors="replace") as handle:
        return f"{step} on {backend} failed:\n{handle.read()[-4000:]}"


@pytest.fixture(scope="module")
def exchanged(tmp_path_factory):
    require_backends(*BACKENDS)
    directory = tmp_path_factory.mktemp("interchange")
    children = {}
    try:
        # One at a time (the machine is small); each child then waits for the others.
        for backend in BACKENDS:
            child = children[backend] = subprocess.Popen(
                [sys.executable, CHILD, str(directory)], env=python_env(KERAS_BACKEND=backend),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                # A file, not a pipe: nobody reads stderr while the child runs.
                stderr=open(directory / f"{backend}.stderr", "w", encoding="utf-8"),
                text=True)
            lines = iter(child.stdout.readline, "")  # Until "written" or the child's end.
            assert any(line.strip() == "written" for line in lines), _failure(
                backend, directory, "write")
        for backend, child in children.items():
            output, _ = child.communicate("read\n", timeout=600)
            assert child.returncode == 0 and output.strip() == "read", _failure(
                backend, directory, "read")
    finally:
        for child in children.values():
            if child.poll() is None:
                child.kill()
                child.communicate()
    return directory


def _weights(path):
    with np.load(path) as archive:
        return [archive[f"arr_{i}"] for i in range(len(archive.files))]


@pytest.mark.slow
@pytest.mark.parametrize("writer", BACKENDS)
@pytest.mark.parametrize("reader", BACKENDS)
def test_keras_file_loads_with_the_same_weights_and_logits(exchanged, writer, reader):
    written = _weights(exchanged / f"{writer}.weights.npz")
    read = _weights(exchanged / f"{writer}.read_by_{reader}.weights.npz")
    assert len(read) == len(written)
    for index, (a, b) in enumerate(zip(written, read)):
        assert a.dtype == b.dtype and a.shape == b.shape, index
        assert a.tobytes() == b.tobytes(), f"weight {index} differs"  # Bit-equal.
    # The training step moved every batch norm away from the randomised values: a
    # statistic that stayed at its initial value would hide a mistake in its handling.
    assert not any(np.all(w == 0) or np.all(w == 1) for w in written if w.ndim == 1
                   and w.size > 1)
    logits = np.load(exchanged / f"{writer}.logits.npy")
    loaded_logits = np.load(exchanged / f"{writer}.read_by_{reader}.logits.npy")
    assert logits.shape == (4, 10)
    np.testing.assert_allclose(loaded_logits, logits, rtol=0, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("writer", BACKENDS)
def test_keras_file_records_the_backend_that_wrote_it(exchanged, writer):
    for reader in BACKENDS:
        with open(exchanged / f"{writer}.read_by_{reader}.json", encoding="utf-8") as handle:
            found = json.load(handle)
        assert found["class"] == "IRevNet"
        assert found["optimizer"] == "SGD"  # Compiled from the file's compile config,
        # with jit_compile resolved where it loads (XLA on JAX, eager on PyTorch), not
        # the writer's (torch.compile on PyTorch, un-jitted JAX).
        assert found["jit_compile"] == found["jit_compile_here"]
        assert found["recorded"]["keras_backend"] == writer
        assert found["mean"] == [120.0, 115.0, 100.0]  # The sidecar's normalisation.
        backend_named = [d for d in found["differences"] if d.startswith("keras_backend")]
        assert bool(backend_named) == (writer != reader)


@pytest.mark.slow
@pytest.mark.parametrize("reader", BACKENDS)
def test_model_directories_are_tensorflows(exchanged, reader):
    with open(exchanged / f"model_dir.{reader}.txt", encoding="utf-8") as handle:
        message = handle.read()
    if reader == "tensorflow":  # The directory holds no run_config.json.
        assert "holds no run_config.json" in message
    else:
        assert "restore under KERAS_BACKEND=tensorflow only" in message
        assert f"this process runs {reader}" in message
