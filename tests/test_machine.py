"""irevnet_tf.machine: what chose F's kernels, recorded in `.keras` files and exports, and
compared with the machine at hand."""

import json
import os

import pytest

from irevnet_tf import build_irevnet, machine, model_files
from irevnet_tf.serving import export as export_lib


def _cpuinfo_flags():
    """This CPU's flags, read here independently of the package (Linux only)."""
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.split(":")[0].strip() in ("flags", "Features"):
                return set(line.split(":", 1)[1].split())
    return set()


@pytest.fixture(scope="module")
def tiny():
    model = build_irevnet("irevnet_tiny")
    run_config = model_files.RunConfig(config_name="irevnet_tiny", dataset="synthetic",
                                       image_size=32, num_classes=10, mean=(0.0,), std=(1.0,))
    return model, run_config


def test_description_of_this_machine():
    import tensorflow as tf

    here = machine.describe()
    assert here["tensorflow"] == tf.__version__
    assert isinstance(here["onednn"], bool)
    assert here["tf_enable_onednn_opts"] == os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    if os.path.exists("/proc/cpuinfo"):
        flags = _cpuinfo_flags()
        assert set(here["cpu_flags"]) == flags & set(machine.KERNEL_CPU_FLAGS)
    assert machine.differences(here) == []


def test_differences_name_what_changes_the_kernels():
    here = machine.describe()
    other = dict(here, onednn=not here["onednn"], cpu="another CPU",
                 cpu_flags=sorted(set(here["cpu_flags"]) - {"avx2"} | {"amx_tile"}))
    found = machine.differences(other)
    assert f"onednn: {other['onednn']!r} where recorded, {here['onednn']!r} here" in found
    expected_flags = [part for part in (
        "this CPU adds avx2" if "avx2" in here["cpu_flags"] else "",
        "lacks amx_tile" if "amx_tile" not in here["cpu_flags"] else "") if part]
    assert f"cpu_flags: {' and '.join(expected_flags)}" in found
    assert len(found) == 2  # The CPU's name alone does not choose kernels.


def test_keras_file_and_export_record_the_machine(tiny, tmp_path):
    import keras

    model, run_config = tiny
    path = str(tmp_path / "model.keras")
    model_files.save_keras_model(model, run_config, path)
    assert machine.recorded(path) == machine.describe()
    assert machine.recorded(str(tmp_path)) == machine.describe()  # A model directory.
    assert type(keras.saving.load_model(path)).__name__ == "IRevNet"  # Keras ignores it.

    version_dir = export_lib.export_saved_model(model, run_config, str(tmp_path / "export"),
                                                warmup=False)
    with open(os.path.join(version_dir, "assets.extra", export_lib.METADATA_FILE)) as handle:
        assert json.load(handle)[machine.EXPORT_KEY] == machine.describe()
    assert machine.differences(machine.recorded(version_dir)) == []
    assert machine.recorded(str(tmp_path / "nothing")) is None


def test_record_names_the_keras_backend():
    import keras
    import tensorflow as tf

    here = machine.describe()
    assert here["keras_backend"] == keras.backend.backend()
    if here["keras_backend"] == "tensorflow":
        assert here["backend_version"] == f"tensorflow {tf.__version__}"


def test_a_record_from_before_backends_were_recorded_is_tensorflows():
    here = machine.describe()
    old = {key: value for key, value in here.items()
           if key not in ("keras_backend", "backend_version")}
    assert (machine.differences(old) == []) == (here["keras_backend"] == "tensorflow")


def test_another_backend_is_named_without_tensorflows_settings():
    here = machine.describe()
    jax_record = dict(here, keras_backend="jax", backend_version="jaxlib 0.0",
                      onednn=not here["onednn"])
    torch_record = dict(jax_record, keras_backend="torch", backend_version="torch 0.0")
    found = machine.differences(jax_record, current=dict(here, keras_backend="tensorflow"))
    assert found[0] == "keras_backend: 'jax' where recorded, 'tensorflow' here"
    assert not any(item.startswith("onednn") for item in found)
    # Between two non-TensorFlow records, TensorFlow's oneDNN setting chooses nothing.
    assert machine.differences(jax_record, current=dict(jax_record, onednn=here["onednn"])) == []
    assert machine.differences(jax_record, current=torch_record) == [
        "keras_backend: 'jax' where recorded, 'torch' here",
        "backend_version: 'jaxlib 0.0' where recorded, 'torch 0.0' here"]
