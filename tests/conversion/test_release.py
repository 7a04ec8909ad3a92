"""Release conversion: names and shapes against the release's state_dict listing, outputs
against an independent float64 numpy forward pass of the release's NCHW computation, and
refusals (missing, extra, wrongly shaped entries, other architectures, corrupt files)."""

import json
import os

import numpy as np
import pytest

from irevnet_tf.conversion import release
from irevnet_tf.conversion.torch_checkpoint import CheckpointError
from irevnet_tf import model_files as model_dir
from tests.conversion import release_reference as ref

TSV = os.path.join(os.path.dirname(__file__), "data", "release_state_dict_irevnet301.tsv")
IREVNET301_TRAINABLE = 125_120_356

# A reduced ImageNet-style model (stride-2 stages like the release, stride-1 blocks inside
# them) and a CIFAR-style one (injective first block, dropout in the bottlenecks).
IMAGENET_LIKE = ref.Architecture(blocks=(2, 2, 1), strides=(2, 2, 2), channels=(24, 96, 384),
                                 num_classes=10, image_size=32)
CIFAR_LIKE = ref.Architecture(blocks=(2, 1, 1), strides=(1, 2, 2), channels=(16, 64, 256),
                              init_ds=0, num_classes=10, image_size=16)


def _converted(tmp_path, arch, state, extra_overrides=None, **save_kwargs):
    path = tmp_path / "release.pth.tar"
    ref.save_with_torch(path, state, **save_kwargs)
    output = tmp_path / "out" / "converted.keras"
    overrides = {**arch.model_overrides(), **(extra_overrides or {})}
    summary = release.convert_release(path, output, overrides=overrides)
    return summary, output


def _assert_written_nothing(directory, output):
    assert not os.path.exists(output)
    assert not os.path.exists(str(output) + ".run_config.json")
    if os.path.isdir(directory):
        assert not [name for name in os.listdir(directory) if name.startswith(".tmp-")]


def test_reference_names_match_the_release_listing():
    # The test helper that names reduced checkpoints follows the release exactly.
    assert ref.release_entries(ref.IREVNET301) == ref.read_tsv(TSV)
    assert len(ref.read_tsv(TSV)) == 1802


def test_irevnet301_expects_exactly_the_release_names_and_shapes():
    model = release.build_release_model("irevnet301")
    listing = {name: shape for name, shape, _ in ref.read_tsv(TSV)}
    targets = release.release_targets(model)
    expected = {name: shape for name, shape in listing.items()
                if not name.endswith("num_batches_tracked")}
    assert {t.name: t.checkpoint_shape for t in targets} == expected
    assert sum(int(np.prod(v.shape)) for v in model.trainable_weights) == IREVNET301_TRAINABLE
    assert (model.blocks, model.bn_epsilon, model.bn_momentum, model.head_bn_momentum) == (
        (6, 16, 72, 6), 1e-5, 0.9, 0.1)


@pytest.mark.parametrize("arch, extra", [(IMAGENET_LIKE, None),
                                         (CIFAR_LIKE, {"dropout_rate": 0.1})],
                         ids=["imagenet_like", "cifar_like"])
def test_converted_model_computes_what_the_release_computes(tmp_path, arch, extra):
    pytest.importorskip("torch")
    state = ref.random_state_dict(ref.release_entries(arch), seed=1)
    summary, output = _converted(tmp_path, arch, state, extra_overrides=extra)
    model, run_config = model_dir.restore_model(str(output))

    images = np.random.default_rng(2).normal(
        size=(3, arch.image_size, arch.image_size, 3)).astype("float32")
    want_logits, want_phi = ref.release_forward(state, arch, images)
    phi = model.encode(images).numpy()
    np.testing.assert_allclose(phi, want_phi, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(model(images).numpy(), want_logits, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(model.classify(phi).numpy(), want_logits, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(model.decode(phi).numpy(), images, atol=1e-4)

    ignored = sum(name.endswith("num_batches_tracked") for name in state)
    assert (summary.entries_mapped, summary.entries_ignored) == (len(state) - ignored, ignored)
    assert summary.trainable_parameters == sum(
        value.size for name, value in state.items()
        if not name.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert run_config.config_name == "irevnet301"
    assert run_config.num_classes == 10 and run_config.image_size == arch.image_size


def test_every_variable_equals_its_transposed_source(tmp_path):
    pytest.importorskip("torch")
    arch = IMAGENET_LIKE
    state = ref.random_state_dict(ref.release_entries(arch), seed=3)
    _, output = _converted(tmp_path, arch, state)
    model, _ = model_dir.restore_model(str(output))
    _assert_variables_equal_sources(model, state)


def _assert_variables_equal_sources(model, state):
    """Checks each variable against its source by hand-written layout rules."""
    fields = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
              "moving_variance": "running_var"}
    checked = 0
    for index, block in enumerate(model.stack):
        b = block.bottleneck
        positions = ({"preact_bn": 0, "conv1": 2, "bn1": 3, "conv2": 5, "bn2": 7, "conv3": 9}
                     if index else {"conv1": 0, "bn1": 1, "conv2": 3, "bn2": 5, "conv3": 7})
        for attribute, position in positions.items():
            layer = getattr(b, attribute)
            prefix = f"stack.{index}.bottleneck_block.{position}"
            if attribute.startswith("conv"):
                source = state[f"{prefix}.weight"]  # (out, in, kh, kw)
                kernel = layer.kernel.numpy()       # (kh, kw, in, out)
                for kh in range(3):
                    for kw in range(3):
                        np.testing.assert_array_equal(kernel[kh, kw], source[:, :, kh, kw].T)
                checked += 1
            else:
                for keras_name, torch_name in fields.items():
                    np.testing.assert_array_equal(getattr(layer, keras_name).numpy(),
                                                  state[f"{prefix}.{torch_name}"])
                    checked += 1
    for keras_name, torch_name in fields.items():
        np.testing.assert_array_equal(getattr(model.head_bn, keras_name).numpy(),
                                      state[f"bn1.{torch_name}"])
    np.testing.assert_array_equal(model.classifier.kernel.numpy(), state["linear.weight"].T)
    np.testing.assert_array_equal(model.classifier.bias.numpy(), state["linear.bias"])
    assert checked + 6 == len(model.weights)


def test_restore_model_gives_the_same_outputs_and_sidecar(tmp_path):
    torch = pytest.importorskip("torch")
    arch = IMAGENET_LIKE
    state = ref.random_state_dict(ref.release_entries(arch), seed=4)
    path = tmp_path / "release.pth.tar"
    ref.save_with_torch(path, state)
    model = release.build_release_model("irevnet301", **arch.model_overrides())
    release.load_release_weights(
        model, {name: torch.from_numpy(value) for name, value in state.items()})
    output = tmp_path / "irevnet.keras"
    summary = release.convert_release(path, output, overrides=arch.model_overrides())
    restored, run_config = model_dir.restore_model(str(output))
    images = np.random.default_rng(5).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(restored(images).numpy(), model(images).numpy())

    assert summary.run_config_path == str(output) + ".run_config.json"
    with open(summary.run_config_path) as handle:
        recorded = json.load(handle)
    assert recorded["dataset"] == "imagenet2012"
    assert recorded["mean"] == [123.675, 116.28, 103.53]
    assert recorded["std"] == [58.395, 57.12, 57.375]
    assert recorded["overrides"]["bn_epsilon"] == 1e-5
    # Rebuilt from the RunConfig alone, the model has the same structure.
    rebuilt = run_config.build_model()
    assert [v.shape for v in rebuilt.weights] == [v.shape for v in restored.weights]
    assert oct(os.stat(output).st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    value = os.umask(0)
    os.umask(value)
    return value


@pytest.mark.parametrize("legacy, prefix, nested", [(True, "", False), (False, "", False),
                                                     (True, "module.", True)],
                         ids=["legacy_bare", "zip_bare", "legacy_nested_module"])
def test_checkpoint_layouts(tmp_path, legacy, prefix, nested):
    pytest.importorskip("torch")
    arch = IMAGENET_LIKE
    state = ref.random_state_dict(ref.release_entries(arch), seed=6)
    if legacy:  # 2018 checkpoints (torch 0.4.0) had no num_batches_tracked.
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    _, output = _converted(tmp_path, arch, state, legacy=legacy, prefix=prefix, nested=nested)
    model, _ = model_dir.restore_model(str(output))
    _assert_variables_equal_sources(model, state)


def test_torch_reader_gives_the_same_weights(tmp_path):
    pytest.importorskip("torch")
    arch = IMAGENET_LIKE
    state = ref.random_state_dict(ref.release_entries(arch), seed=7)
    path = tmp_path / "release.pth"
    ref.save_with_torch(path, state)
    builtin, _ = release.read_release_checkpoint(path)
    via_torch, _ = release.read_release_checkpoint(path, reader="torch")
    assert list(builtin) == list(via_torch) == list(state)
    for name in state:
        np.testing.assert_array_equal(builtin[name], via_torch[name])
        np.testing.assert_array_equal(builtin[name], state[name])


# --- refusals --------------------------------------------------------------------------


def _refused(tmp_path, state, arch=IMAGENET_LIKE, match=None, **save_kwargs):
    path = tmp_path / "bad.pth"
    ref.save_with_torch(path, state, **save_kwargs)
    directory = tmp_path / "out"
    output = directory / "never.keras"
    with pytest.raises(release.ReleaseConversionError, match=match) as info:
        release.convert_release(path, output, overrides=arch.model_overrides())
    _assert_written_nothing(directory, output)
    return info.value


def test_missing_extra_and_wrongly_shaped_entries_are_all_named(tmp_path):
    pytest.importorskip("torch")
    state = ref.random_state_dict(ref.release_entries(IMAGENET_LIKE), seed=8)
    del state["stack.2.bottleneck_block.5.weight"]
    del state["bn1.running_var"]
    state["stack.1.bottleneck_block.3.extra"] = np.zeros(3, "float32")
    state["classifier.weight"] = np.zeros((10, 768), "float32")
    state["stack.0.bottleneck_block.3.weight"] = np.zeros((6, 6, 5, 5), "float32")
    state["linear.weight"] = np.zeros((768, 10), "float32")
    error = _refused(tmp_path, state)
    message = str(error)
    assert ("unused: [stack.1.bottleneck_block.3.extra, classifier.weight]; missing: "
            "[stack.2.bottleneck_block.5.weight, bn1.running_var]; wrong shape: "
            "stack.0.bottleneck_block.3.weight (checkpoint (6, 6, 5, 5) vs model "
            "(6, 6, 3, 3)), linear.weight (checkpoint (768, 10) vs model (10, 768))") in message
    assert "Nothing was written" in message
    assert error.unused == ["stack.1.bottleneck_block.3.extra", "classifier.weight"]
    assert error.missing == ["stack.2.bottleneck_block.5.weight", "bn1.running_var"]
    assert [name for name, _, _ in error.wrong_shape] == [
        "stack.0.bottleneck_block.3.weight", "linear.weight"]


def test_integer_weights_are_refused(tmp_path):
    pytest.importorskip("torch")
    state = ref.random_state_dict(ref.release_entries(IMAGENET_LIKE), seed=9)
    state["linear.bias"] = np.arange(10, dtype="int64")
    _refused(tmp_path, state, match=r"wrong dtype .*linear.bias \(int64\)")


def test_resnet_checkpoint_is_not_an_irevnet(tmp_path):
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    resnet = {"conv1.weight": rng.normal(size=(64, 3, 7, 7)).astype("float32"),
              "bn1.weight": np.ones(64, "float32"), "bn1.bias": np.zeros(64, "float32"),
              "bn1.running_mean": np.zeros(64, "float32"),
              "bn1.running_var": np.ones(64, "float32"),
              "layer1.0.conv1.weight": rng.normal(size=(64, 64, 3, 3)).astype("float32"),
              "fc.weight": rng.normal(size=(1000, 2048)).astype("float32"),
              "fc.bias": np.zeros(1000, "float32")}
    error = _refused(tmp_path, resnet, match="does not hold an i-RevNet state_dict")
    assert "conv1.weight" in str(error) and "fc.weight" in error.unused


def test_cifar_irevnet_into_the_imagenet_layout_is_another_architecture(tmp_path):
    pytest.importorskip("torch")
    cifar = ref.Architecture(blocks=(18, 18, 18), strides=(1, 2, 2), channels=(16, 64, 256),
                             init_ds=0, num_classes=10, image_size=32)
    state = ref.random_state_dict(ref.release_entries(cifar), seed=10)
    error = _refused(tmp_path, state, match="another i-RevNet configuration")
    message = str(error)
    assert "checkpoint 54 blocks (widths 16 x18, 64 x18, 256 x18), head 512 -> 10 classes" \
        in message
    assert "model 5 blocks (widths 24 x2, 96 x2, 384 x1), head 768 -> 10 classes" in message
    assert "more]" in message  # Hundreds of names are summarised ...
    assert len(error.unused) > 200  # ... and all kept on the exception.


def test_pickled_module_is_refused_without_running_it(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "whole_model.pth"
    torch.save(torch.nn.Sequential(torch.nn.Linear(2, 2)), str(path))
    output = tmp_path / "never.keras"
    with pytest.raises(release.ReleaseConversionError,
                       match="pickled torch.nn.modules.container.Sequential object"):
        release.convert_release(path, output, config_name="irevnet_tiny")
    _assert_written_nothing(tmp_path, output)


def test_corrupt_checkpoint_writes_nothing(tmp_path):
    path = tmp_path / "corrupt.pth"
    path.write_bytes(b"PK\x03\x04 this was a zip once" + os.urandom(200))
    output = tmp_path / "out" / "never.keras"
    with pytest.raises(CheckpointError, match="corrupt.pth"):
        release.convert_release(path, output, config_name="irevnet_tiny")
    _assert_written_nothing(tmp_path / "out", output)


def test_existing_output_needs_overwrite(tmp_path):
    pytest.importorskip("torch")
    arch = IMAGENET_LIKE
    state = ref.random_state_dict(ref.release_entries(arch), seed=11)
    path = tmp_path / "release.pth"
    ref.save_with_torch(path, state)
    output = tmp_path / "model.keras"
    output.write_text("precious")
    with pytest.raises(FileExistsError, match="overwrite"):
        release.convert_release(path, output, overrides=arch.model_overrides())
    assert output.read_text() == "precious"
    release.convert_release(path, output, overrides=arch.model_overrides(), overwrite=True)
    model, _ = model_dir.restore_model(str(output))
    _assert_variables_equal_sources(model, state)


def test_bad_arguments_fail_early(tmp_path):
    with pytest.raises(ValueError, match="ending in '.keras'"):
        release.convert_release(tmp_path / "x.pth", tmp_path / "model.h5")
    with pytest.raises(ValueError, match="Unknown i-RevNet configuration"):
        release.convert_release(tmp_path / "x.pth", tmp_path / "m.keras", config_name="resnet")
    with pytest.raises(ValueError, match="reader"):
        release.convert_release(tmp_path / "x.pth", tmp_path / "m.keras", reader="pickle")
    with pytest.raises(FileNotFoundError, match="no file"):
        release.convert_release(tmp_path / "x.pth", tmp_path / "m.keras")
    with pytest.raises(ValueError, match="bn_epsilon must keep the release's values"):
        release.build_release_model("irevnet_tiny", bn_epsilon=1e-3)
    with pytest.raises(TypeError, match="IRevNet"):
        release.release_targets(object())


@pytest.mark.slow
def test_full_release_checkpoint_converts(tmp_path):
    """All 1,802 entries of the release's listing, random values, `module.` prefixes,
    inside {"state_dict": ...}: 125,120,356 trainable parameters, each its source."""
    pytest.importorskip("torch")
    rng = np.random.default_rng(12)
    state = {}
    for name, shape, dtype in ref.read_tsv(TSV):
        if dtype == "int64":
            state[name] = np.array(int(rng.integers(0, 10**6)), dtype="int64")
        else:
            state[name] = rng.standard_normal(shape, dtype=np.float32)
    summary, output = _converted(tmp_path, ref.IREVNET301, state)
    assert summary.trainable_parameters == IREVNET301_TRAINABLE
    assert (summary.entries_mapped, summary.entries_ignored) == (1502, 300)
    model, run_config = model_dir.restore_model(str(output))
    assert (run_config.config_name, run_config.dataset, run_config.image_size,
            run_config.num_classes) == ("irevnet301", "imagenet2012", 224, 1000)
    assert sum(int(np.prod(v.shape)) for v in model.trainable_weights) == IREVNET301_TRAINABLE
    _assert_variables_equal_sources(model, state)
