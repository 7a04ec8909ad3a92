"""Export: version directories, atomic publication, refusals, and loading the result without
irevnet_tf (a fresh Python with TensorFlow only, saved_model_cli, the command line)."""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from irevnet_tf import build_irevnet
from irevnet_tf.serving import export as export_lib
from irevnet_tf.serving import warmup as warmup_lib
from irevnet_tf import model_files as model_dir_lib
from tests.helpers import write_model_dir
from tests.helpers.models import identity_twin
from tests.helpers.processes import ROOT, python_env
from tests.serving.helpers import MEAN, STD, normalise_numpy, pixels, softmax_numpy

SUBPROCESS_TIMEOUT = 300


def listing(directory):
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def exported_logits(version_dir, images):
    loaded = tf.saved_model.load(version_dir)
    return loaded.signatures["serving_default"](images=tf.constant(images))["logits"].numpy()


def copy_of_export_root(exported, tmp_path):
    """A copy of the directory holding the shared export (version 1), to change freely."""
    root = str(tmp_path / "exports")
    shutil.copytree(os.path.dirname(exported), root)
    assert listing(root) == ["1"]
    return root


def test_layout_and_metadata(exported):
    assert {"saved_model.pb", "variables", "assets.extra"} <= set(listing(exported))
    assert listing(os.path.dirname(exported)) == ["1"]  # No staging directory left behind.
    assert listing(os.path.join(exported, "assets.extra")) == [
        export_lib.METADATA_FILE, warmup_lib.WARMUP_FILE]
    with open(os.path.join(exported, "assets.extra", export_lib.METADATA_FILE)) as handle:
        metadata = json.load(handle)
    assert metadata["image_size"] == 32 and metadata["feature_shape"] == [4, 4, 192]
    np.testing.assert_allclose(metadata["mean"], MEAN)
    np.testing.assert_allclose(metadata["std"], STD)
    assert metadata["pixel_range"] == [0.0, 255.0]
    assert sorted(metadata["signatures"]) == sorted(
        ["serving_default", "classify_image_bytes", "encode", "decode", "encode_stages"])
    assert metadata["signatures"]["classify_image_bytes"]["inputs"] == {"image_bytes": "string"}
    assert metadata["run_config"]["config_name"] == "irevnet_tiny"


def test_next_version_and_explicit_version(trained, exported, tmp_path):
    model, run_config = trained
    root = copy_of_export_root(exported, tmp_path)
    os.makedirs(os.path.join(root, "not_a_version"))
    assert export_lib.resolve_version(root) == 2
    assert export_lib.resolve_version(root, version=9) == 9
    assert export_lib.export_saved_model(model, run_config, root) == os.path.join(root, "2")
    assert listing(root) == ["1", "2", "not_a_version"]


def test_existing_version_refused_unless_overwrite(trained, exported, tmp_path):
    model, run_config = trained
    root = copy_of_export_root(exported, tmp_path)
    version_dir = os.path.join(root, "1")
    marker = os.path.join(version_dir, "marker")
    open(marker, "w").close()
    with pytest.raises(FileExistsError, match="version 1 already exists.*--overwrite"):
        export_lib.export_saved_model(model, run_config, root, version=1)
    with pytest.raises(FileExistsError, match="version 1 already exists"):
        export_lib.export_model_path("/nonexistent/model_dir", root, version=1)
    assert os.path.exists(marker) and listing(root) == ["1"]
    assert export_lib.export_saved_model(model, run_config, root, version=1,
                                         overwrite=True) == version_dir
    assert not os.path.exists(marker)
    assert listing(root) == ["1"]  # Neither the old copy nor a staging directory is left.
    assert exported_logits(version_dir, pixels(1)).shape == (1, 10)


@pytest.mark.parametrize("version", [0, -3, "2", 1.5, True])
def test_bad_version_is_refused(tmp_path, version):
    with pytest.raises(ValueError, match="positive integer"):
        export_lib.resolve_version(str(tmp_path), version)


@pytest.mark.parametrize("failure", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_interrupted_export_leaves_no_version(trained, tmp_path, monkeypatch, failure):
    model, run_config = trained
    root = str(tmp_path / "exports")
    real_save = tf.saved_model.save

    def save_then_fail(*args, **kwargs):  # The SavedModel is written, then the export stops.
        real_save(*args, **kwargs)
        raise failure

    monkeypatch.setattr(export_lib.tf.saved_model, "save", save_then_fail)
    with pytest.raises(type(failure)):
        export_lib.export_saved_model(model, run_config, root)
    assert listing(root) == []
    assert export_lib.existing_versions(root) == []


def test_failing_warmup_writer_leaves_no_version(trained, tmp_path, monkeypatch):
    model, run_config = trained
    root = str(tmp_path / "exports")

    def fail(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(warmup_lib, "write_warmup_file", fail)
    with pytest.raises(OSError, match="No space"):
        export_lib.export_saved_model(model, run_config, root)
    assert listing(root) == []


@pytest.mark.slow
def test_killed_export_leaves_no_version(trained, tmp_path):
    """A process killed mid-export (SIGKILL: no clean-up runs) leaves only a hidden staging
    directory, which neither TF Serving nor the next export takes for a version."""
    model, run_config = trained
    model_dir = write_model_dir(str(tmp_path / "model_dir"), model, run_config)
    root = str(tmp_path / "exports")
    script = textwrap.dedent(f"""
        import os, signal
        import tensorflow as tf
        from irevnet_tf.serving import export
        real_save = tf.saved_model.save
        def save_then_die(*args, **kwargs):
            real_save(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)
        export.tf.saved_model.save = save_then_die
        model, run_config = export.model_dir_lib.restore_model({model_dir!r})
        export.export_saved_model(model, run_config, {root!r})
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=str(tmp_path),
                            env=python_env(), timeout=SUBPROCESS_TIMEOUT,
                            capture_output=True, text=True)
    assert result.returncode == -9, result.stderr[-2000:]
    names = listing(root)
    assert names and all(name.startswith(".") for name in names)
    assert export_lib.existing_versions(root) == []
    assert export_lib.resolve_version(root) == 1


def test_base_install_exports_without_warmup_and_says_so_in_one_line(trained, tmp_path,
                                                                    monkeypatch):
    """Without tensorflow-serving-api (simulated: its import fails) the default export is
    written without warm-up requests and one warning line says so; asking for them
    (warmup=True) is refused before anything is written."""
    model, run_config = trained
    root = str(tmp_path / "exports")
    monkeypatch.setitem(sys.modules, "tensorflow_serving", None)
    monkeypatch.setitem(sys.modules, "tensorflow_serving.apis", None)
    with pytest.raises(ImportError, match=r"irevnet_tf\[serving\].*--nowarmup"):
        export_lib.export_saved_model(model, run_config, root, warmup=True)
    with pytest.raises(ImportError, match=r"irevnet_tf\[serving\]"):
        export_lib.export_model_path(str(tmp_path / "no_model_dir"), root, warmup=True)
    assert not os.path.exists(root)
    warnings = []
    monkeypatch.setattr(export_lib.logging, "warning",
                        lambda message, *args: warnings.append(message % args if args
                                                               else message))
    version_dir = export_lib.export_saved_model(model, run_config, root)
    assert listing(os.path.join(version_dir, "assets.extra")) == [export_lib.METADATA_FILE]
    assert len(warnings) == 1 and "\n" not in warnings[0], warnings
    assert "without TF Serving warm-up requests" in warnings[0]
    assert "tensorflow-serving-api is not installed" in warnings[0]
    version_dir = export_lib.export_saved_model(model, run_config, root, warmup=False)
    assert listing(os.path.join(version_dir, "assets.extra")) == [export_lib.METADATA_FILE]
    assert len(warnings) == 1  # Asked for no warm-up: nothing to say.


def test_model_dir_export_reproduces_the_checkpoint(model_dir, trained, tmp_path):
    model, _ = trained
    root = str(tmp_path / "exports")
    version_dir = export_lib.export_model_path(model_dir, root)
    images = pixels(3, seed=7)
    expected = identity_twin(model)(normalise_numpy(images), training=False).numpy()
    np.testing.assert_allclose(exported_logits(version_dir, images), expected, rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("other", [dict(mult=4), dict(num_classes=7)])
def test_checkpoint_of_another_configuration_is_refused(tmp_path, other):
    """run_config.json says irevnet_tiny; the checkpoint is of irevnet_tiny with other
    bottleneck widths (same head) or another number of classes (same blocks)."""
    foreign = build_irevnet("irevnet_tiny", **other)
    model_dir = str(tmp_path / "model_dir")
    write_model_dir(model_dir, foreign, model_dir_lib.RunConfig(
        config_name="irevnet_tiny", image_size=32, num_classes=10, mean=MEAN, std=STD))
    root = str(tmp_path / "exports")
    with pytest.raises(ValueError, match="does not (fit|hold every variable)"):
        export_lib.export_model_path(model_dir, root)
    assert not os.path.exists(root)


def test_keras_file_export(trained, tmp_path):
    model, run_config = trained
    path = str(tmp_path / "tiny.keras")
    model.save(path)
    run_config.save(path + ".run_config.json")
    version_dir = export_lib.export_model_path(path, str(tmp_path / "exports"))
    images = pixels(2, seed=8)
    expected = identity_twin(model)(normalise_numpy(images), training=False).numpy()
    np.testing.assert_allclose(exported_logits(version_dir, images), expected, rtol=1e-5,
                               atol=1e-5)


FRESH_PROCESS_SCRIPT = textwrap.dedent("""
    import sys
    sys.modules["irevnet_tf"] = None  # Importing irevnet_tf would now fail.
    import numpy as np
    import tensorflow as tf
    export_dir, images_path, out_path = sys.argv[1:4]
    images = np.load(images_path)
    loaded = tf.saved_model.load(export_dir)
    features = loaded.signatures["encode"](images=tf.constant(images))["features"]
    decoded = loaded.signatures["decode"](features=features)["images"]
    classified = loaded.signatures["serving_default"](images=tf.constant(images))
    stages = loaded.signatures["encode_stages"](images=tf.constant(images))
    np.savez(out_path, features=features.numpy(), decoded=decoded.numpy(),
             logits=classified["logits"].numpy(),
             probabilities=classified["probabilities"].numpy(),
             classes=classified["classes"].numpy(), stage_count=len(stages))
    print("modules:", sorted(name for name, module in sys.modules.items()
                             if name.split(".")[0] == "irevnet_tf" and module is not None))
""")


def test_fresh_process_with_tensorflow_only(exported, trained, tmp_path):
    model, _ = trained
    images = pixels(3, seed=9)
    np.save(tmp_path / "images.npy", images)
    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS_SCRIPT, exported, str(tmp_path / "images.npy"),
         str(tmp_path / "out.npz")],
        cwd=str(tmp_path), env=python_env(pythonpath=""),
        timeout=SUBPROCESS_TIMEOUT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "modules: []" in result.stdout
    out = np.load(tmp_path / "out.npz")
    assert np.max(np.abs(out["decoded"] - images)) < 1e-5 * 255.0
    expected_logits = identity_twin(model)(normalise_numpy(images), training=False).numpy()
    np.testing.assert_allclose(out["logits"], expected_logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["probabilities"], softmax_numpy(out["logits"]), atol=1e-6)
    np.testing.assert_array_equal(out["classes"][:, 0], np.argmax(expected_logits, axis=-1))
    assert int(out["stage_count"]) == 4


def saved_model_cli():
    beside_python = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    if os.path.exists(beside_python):
        return [beside_python]
    if shutil.which("saved_model_cli"):
        return [shutil.which("saved_model_cli")]
    return [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]


def signature_blocks(show_output):
    """`{signature name: text of its block}` from `saved_model_cli show --all`."""
    parts = re.split(r"signature_def\['([^']+)'\]:", show_output)
    return dict(zip(parts[1::2], parts[2::2]))


def test_saved_model_cli_show(exported, tmp_path):
    show = subprocess.run(saved_model_cli() + ["show", "--dir", exported, "--all"],
                          cwd=str(tmp_path), env=python_env(), timeout=SUBPROCESS_TIMEOUT,
                          capture_output=True, text=True)
    assert show.returncode == 0, show.stderr[-3000:]
    blocks = signature_blocks(show.stdout)
    expected = {
        "serving_default": [("images", "DT_FLOAT", "(-1, 32, 32, 3)"),
                            ("logits", "DT_FLOAT", "(-1, 10)"),
                            ("probabilities", "DT_FLOAT", "(-1, 10)"),
                            ("classes", "DT_INT32", "(-1, 5)"),
                            ("scores", "DT_FLOAT", "(-1, 5)")],
        "classify_image_bytes": [("image_bytes", "DT_STRING", "(-1)"),
                                 ("classes", "DT_INT32", "(-1, 5)")],
        "encode": [("images", "DT_FLOAT", "(-1, 32, 32, 3)"),
                   ("features", "DT_INT32", "(-1, 4, 4, 192)")],
        "decode": [("features", "DT_INT32", "(-1, 4, 4, 192)"),
                   ("images", "DT_FLOAT", "(-1, 32, 32, 3)"),
                   ("pixels", "DT_UINT8", "(-1, 32, 32, 3)")],
        "encode_stages": [("images", "DT_FLOAT", "(-1, 32, 32, 3)"),
                          ("stage_0", "DT_INT32", "(-1, 16, 16, 12)"),
                          ("stage_3", "DT_INT32", "(-1, 4, 4, 192)")],
    }
    for name, tensors in expected.items():
        assert name in blocks, sorted(blocks)
        for tensor, dtype, shape in tensors:
            pattern = (r"\['" + tensor + r"'\] tensor_info:\s+dtype: " + dtype
                       + r"\s+shape: " + re.escape(shape))
            assert re.search(pattern, blocks[name]), (name, tensor, blocks[name])


def test_saved_model_cli_run(exported, trained, tmp_path):
    model, _ = trained
    images = pixels(2, seed=10)
    np.save(tmp_path / "images.npy", images)
    run = subprocess.run(
        saved_model_cli() + ["run", "--dir", exported, "--tag_set", "serve", "--signature_def",
                             "encode", "--inputs", f"images={tmp_path / 'images.npy'}",
                             "--outdir", str(tmp_path / "out")],
        cwd=str(tmp_path), env=python_env(), timeout=SUBPROCESS_TIMEOUT,
        capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    features = np.load(tmp_path / "out" / "features.npy")
    assert features.dtype == np.int32
    # Python's Phi up to F's rounding in the export's graph (a grid point here and there).
    expected = identity_twin(model).encode(normalise_numpy(images)).numpy()
    assert np.abs(features - expected).max() <= 4


@pytest.mark.slow
def test_command_line_end_to_end(trained, tmp_path):
    """export/export_savedmodel.py on a .keras file with its run-config sidecar."""
    model, run_config = trained
    path = str(tmp_path / "tiny.keras")
    model.save(path)
    run_config.save(path + ".run_config.json")
    root = str(tmp_path / "exports")
    script = os.path.join(ROOT, "export", "export_savedmodel.py")
    result = subprocess.run(
        [sys.executable, script, f"--model_dir={path}", f"--export_dir={root}", "--version=3"],
        cwd=str(tmp_path), env=python_env(), timeout=SUBPROCESS_TIMEOUT,
        capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == os.path.join(root, "3")
    assert listing(root) == ["3"]
    images = pixels(2, seed=11)
    np.testing.assert_allclose(exported_logits(os.path.join(root, "3"), images),
                               identity_twin(model)(normalise_numpy(images)).numpy(),
                               rtol=1e-5, atol=1e-5)
