"""export/c_loader/run_saved_model.c: the export loaded and run by TensorFlow's C API
(TF_LoadSessionFromSavedModel, i.e. tensorflow::LoadSavedModel, what TF Serving links),
compared with Python's tf.saved_model.load on the same inputs.

The program is compiled with gcc against the TensorFlow wheel's headers and libraries;
the tests skip, saying why, only when gcc, the C API header or the libraries are missing.
"""

import os
import shutil
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers.processes import ROOT, python_env
from tests.serving.helpers import encode_image, pixels

SOURCE = os.path.join(ROOT, "export", "c_loader", "run_saved_model.c")
TIMEOUT = 300
LIBRARIES = ("libtensorflow_cc.so.2", "libtensorflow_framework.so.2")


def _missing_toolchain():
    if shutil.which("gcc") is None:
        return "gcc is not installed"
    header = os.path.join(tf.sysconfig.get_include(), "tensorflow", "c", "c_api.h")
    if not os.path.isfile(header):
        return f"this TensorFlow wheel has no C API header ({header})"
    for library in LIBRARIES:
        if not os.path.isfile(os.path.join(tf.sysconfig.get_lib(), library)):
            return f"this TensorFlow wheel has no {library} in {tf.sysconfig.get_lib()}"
    return None


@pytest.fixture(scope="module")
def c_loader(tmp_path_factory):
    """The compiled program (the build line of docs/serving_c.md)."""
    reason = _missing_toolchain()
    if reason:
        pytest.skip(f"cannot build the C loader: {reason}")
    binary = str(tmp_path_factory.mktemp("c_loader") / "run_saved_model")
    library_dir = tf.sysconfig.get_lib()
    result = subprocess.run(
        ["gcc", "-O2", "-std=c11", "-Wall", "-Wextra", "-Werror",
         f"-I{tf.sysconfig.get_include()}", SOURCE, "-o", binary, f"-L{library_dir}",
         *(f"-l:{library}" for library in LIBRARIES), f"-Wl,-rpath,{library_dir}"],
        capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    return binary


def run_c(binary, export_dir, *arguments, check=True):
    env = python_env()
    result = subprocess.run([binary, export_dir, *arguments], capture_output=True, text=True,
                            timeout=TIMEOUT, env=env)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def run_signature(binary, export_dir, signature, inputs, directory):
    """Writes `inputs` as .npy, runs the C program, returns {output key: array}."""
    os.makedirs(directory, exist_ok=True)
    feeds = []
    for key, value in inputs.items():
        path = os.path.join(directory, f"input_{key}.npy")
        np.save(path, value)
        feeds.append(f"{key}={path}")
    output_dir = os.path.join(directory, "outputs")
    result = run_c(binary, export_dir, signature, *feeds, "-o", output_dir)
    written = result.stdout.split()
    outputs = {os.path.basename(path)[:-len(".npy")]: np.load(path) for path in written}
    assert sorted(f"{key}.npy" for key in outputs) == sorted(os.listdir(output_dir))
    return outputs


def python_outputs(export_dir, signature, inputs):
    function = tf.saved_model.load(export_dir).signatures[signature]
    return {key: value.numpy() for key, value in function(
        **{key: tf.constant(value) for key, value in inputs.items()}).items()}


def assert_bit_equal(got, want):
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key].dtype == want[key].dtype, key
        assert got[key].shape == want[key].shape, key
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_lists_the_signatures_of_the_signature_defs(c_loader, exported):
    listing = run_c(c_loader, exported, "--list").stdout
    loaded = tf.saved_model.load(exported)
    blocks = {}
    for line in listing.splitlines():
        if line.startswith("signature "):
            current = blocks.setdefault(line.split()[1], {"input": {}, "output": {}})
        else:
            kind, key, dtype, _ = line.split()
            current[kind][key.rstrip(":")] = dtype
    # The SavedModel's initialiser is a SignatureDef too; Python's loader hides it.
    assert blocks.pop("__saved_model_init_op")["input"] == {}
    assert sorted(blocks) == sorted(loaded.signatures)
    for name, function in loaded.signatures.items():
        _, input_specs = function.structured_input_signature
        assert blocks[name]["input"] == {key: spec.dtype.name
                                         for key, spec in input_specs.items()}, name
        assert blocks[name]["output"] == {key: spec.dtype.name for key, spec in
                                          function.structured_outputs.items()}, name


def test_encode_decode_and_serving_default_equal_python(c_loader, exported, tmp_path):
    images = pixels(3)
    encoded = run_signature(c_loader, exported, "encode", {"images": images}, tmp_path / "e")
    assert_bit_equal(encoded, python_outputs(exported, "encode", {"images": images}))

    # decode takes encode's output, whatever its dtype (the .npy header carries it).
    features = {"features": encoded["features"]}
    decoded = run_signature(c_loader, exported, "decode", features, tmp_path / "d")
    assert_bit_equal(decoded, python_outputs(exported, "decode", features))
    np.testing.assert_allclose(decoded["images"], images, atol=1e-2)  # It did invert.

    classified = run_signature(c_loader, exported, "serving_default", {"images": images},
                               tmp_path / "s")
    assert_bit_equal(classified, python_outputs(exported, "serving_default", {"images": images}))
    assert classified["classes"].dtype == np.int32


def test_image_bytes_as_fixed_width_strings(c_loader, exported, tmp_path):
    images = np.round(pixels(2, size=40)).astype(np.uint8)
    encoded = np.array([encode_image(image) for image in images])  # numpy |S<n>
    assert encoded.dtype.kind == "S"
    got = run_signature(c_loader, exported, "classify_image_bytes", {"image_bytes": encoded},
                        tmp_path / "b")
    want = python_outputs(exported, "classify_image_bytes",
                          {"image_bytes": np.array(list(encoded), dtype=object)})
    assert_bit_equal(got, want)


class _Dtypes(tf.Module):
    """A signature over the integer, bool and float64 dtypes the export's may come to use."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.uint8, name="small"),
                                  tf.TensorSpec([None, 2], tf.int32, name="pairs")])
    def mix(self, small, pairs):
        return {"sums": tf.reduce_sum(pairs, axis=1) + tf.cast(small, tf.int32),
                "wrapped": small + tf.constant(200, tf.uint8),
                "positive": pairs[:, 0] > 0,
                "halves": tf.cast(pairs, tf.float64) / 2.0,
                "scalar": tf.reduce_max(pairs)}


@pytest.fixture(scope="module")
def dtype_export(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("dtypes") / "1")
    module = _Dtypes()
    tf.saved_model.save(module, directory, signatures={"mix": module.mix})
    return directory


def test_dtypes_come_from_the_npy_header(c_loader, dtype_export, tmp_path):
    inputs = {"small": np.array([0, 55, 56, 255], np.uint8),
              "pairs": np.array([[1, -2], [-3, 4], [2**31 - 1, -(2**31)], [0, 7]], np.int32)}
    got = run_signature(c_loader, dtype_export, "mix", inputs, tmp_path)
    want = python_outputs(dtype_export, "mix", inputs)
    assert_bit_equal(got, want)
    assert got["wrapped"].dtype == np.uint8 and got["positive"].dtype == np.bool_
    assert got["scalar"].shape == () and got["halves"].dtype == np.float64
    np.testing.assert_array_equal(got["wrapped"], (inputs["small"] + 200).astype(np.uint8))


def test_refusals_name_the_problem(c_loader, exported, tmp_path):
    wrong_dtype = str(tmp_path / "images64.npy")
    np.save(wrong_dtype, pixels(1).astype(np.float64))
    result = run_c(c_loader, exported, "encode", f"images={wrong_dtype}", check=False)
    assert result.returncode == 1
    assert "has dtype float64, signature input images takes float32" in result.stderr

    result = run_c(c_loader, exported, "encode", check=False)
    assert result.returncode == 1 and "signature input images needs a file" in result.stderr

    result = run_c(c_loader, exported, "no_such_signature", check=False)
    assert result.returncode == 1 and "has no signature no_such_signature" in result.stderr

    fortran = str(tmp_path / "fortran.npy")
    np.save(fortran, np.asfortranarray(pixels(2)))
    result = run_c(c_loader, exported, "encode", f"images={fortran}", check=False)
    assert result.returncode == 1 and "Fortran-ordered" in result.stderr

    wrong_shape = str(tmp_path / "small.npy")
    np.save(wrong_shape, pixels(1, size=8))
    result = run_c(c_loader, exported, "encode", f"images={wrong_shape}", check=False)
    assert result.returncode == 1 and "running encode failed" in result.stderr
