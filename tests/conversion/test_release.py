"""Release conversion: names and shapes against the release's state_dict listing, outputs
against the release's torch computation (stored when make_fixtures.py wrote the
checkpoints; an independent float64 numpy forward pass agrees with it), and refusals
(missing, extra, wrongly shaped entries, other architectures, corrupt files). No torch."""

import json
import os
import sys

import numpy as np
import pytest

from irevnet_tf.conversion import release
from irevnet_tf.conversion.torch_checkpoint import CheckpointError, TorchCheckpointReader
from irevnet_tf import model_files as model_dir
from tests.conversion import fixtures
from tests.conversion import release_reference as ref

TSV = os.path.join(os.path.dirname(__file__), "data", "release_state_dict_irevnet301.tsv")
IREVNET301_TRAINABLE = 125_120_356

# Reduced ImageNet-style (stride-2 stages like the release, a stride-1 block in each) and
# CIFAR-style (injective first block, dropout in the bottlenecks) release checkpoints,
# written once with torch by make_fixtures.py.
IMAGENET_LIKE = fixtures.IMAGENET_LIKE


def _convert(tmp_path, fixture, extra_overrides=None):
    output = tmp_path / "out" / "converted.keras"
    overrides = {**fixture.arch.model_overrides(), **(extra_overrides or {})}
    summary = release.convert_release(fixture.path, output, overrides=overrides)
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
    assert (model.blocks_per_stage, model.bn_epsilon, model.bn_momentum, model.head_bn_momentum) == (
        (6, 16, 72, 6), 1e-5, 0.9, 0.1)


@pytest.mark.parametrize("name", ["imagenet_like", "cifar_like"])
def test_converted_model_computes_what_the_release_computes(tmp_path, name):
    fixture = fixtures.release(name)
    summary, output = _convert(tmp_path, fixture, {"dropout_rate": fixture.dropout_rate})
    model, run_config = model_dir.restore_model(str(output))

    # The release's outputs, computed by its torch model (float64) when the file was written.
    # The converted model takes pixels and carries the release's (ImageNet's) normalisation.
    assert (model.pixel_mean, model.pixel_std) == fixtures.IMAGENET_MEAN_STD
    pixels = fixtures.release_pixels(fixture.reference["images"])
    want_phi, want_logits = fixture.reference["phi_float64"], fixture.reference["logits_float64"]
    phi = model.encode(pixels).numpy()  # int32 grid points of the exact stream
    fixtures.assert_relative_close(model.dequantize(phi).numpy(), want_phi, what="Phi")
    fixtures.assert_relative_close(model(pixels).numpy(), want_logits, what="logits")
    fixtures.assert_relative_close(model.classify(phi).numpy(), want_logits,
                                   what="classify(Phi)")
    fixtures.assert_relative_close(model.decode(phi).numpy(), pixels, what="decode(Phi)")

    state = fixture.state
    ignored = sum(name.endswith("num_batches_tracked") for name in state)
    assert (summary.entries_mapped, summary.entries_ignored) == (len(state) - ignored, ignored)
    assert summary.trainable_parameters == sum(
        value.size for name, value in state.items()
        if not name.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert run_config.config_name == "irevnet301"
    assert run_config.num_classes == 10 and run_config.image_size == fixture.arch.image_size


def test_numpy_reference_agrees_with_the_stored_torch_outputs():
    # release_reference.release_forward (numpy) and the torch model that wrote the fixture
    # are two independent readings of the paper and the release; both must give the same numbers.
    for name in ("imagenet_like", "cifar_like", "tiny", "tiny-legacy"):
        fixture = fixtures.release(name)
        logits, phi = ref.release_forward(fixture.state, fixture.arch,
                                          fixture.reference["images"])
        assert fixtures.relative_max_error(logits, fixture.reference["logits_float64"]) < 1e-12
        assert fixtures.relative_max_error(phi, fixture.reference["phi_float64"]) < 1e-12
        # The release itself ran in float32; the tolerance of the tests covers that too.
        fixtures.assert_relative_close(fixture.reference["logits_float32"], logits,
                                       what=f"{name} float32 logits")


def test_every_variable_equals_its_transposed_source(tmp_path):
    fixture = fixtures.release("imagenet_like")
    _, output = _convert(tmp_path, fixture)
    model, _ = model_dir.restore_model(str(output))
    _assert_variables_equal_sources(model, fixture.state)


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
    fixture = fixtures.release("imagenet_like")
    arch = fixture.arch
    mean, std = fixtures.IMAGENET_MEAN_STD
    model = release.build_release_model("irevnet301", **arch.model_overrides(),
                                        pixel_mean=mean, pixel_std=std)
    release.load_release_weights(model, fixture.state)  # numpy values, `module.`-free names
    output = tmp_path / "irevnet.keras"
    summary = release.convert_release(fixture.path, output, overrides=arch.model_overrides())
    restored, run_config = model_dir.restore_model(str(output))
    images = np.random.default_rng(5).uniform(
        0, 255, size=(2, arch.image_size, arch.image_size, 3)).astype("float32")
    np.testing.assert_array_equal(restored(images).numpy(), model(images).numpy())
    assert (restored.pixel_mean, restored.pixel_std) == (mean, std)

    assert summary.run_config_path == str(output) + ".run_config.json"
    with open(summary.run_config_path) as handle:
        recorded = json.load(handle)
    assert recorded["dataset"] == "imagenet2012"
    assert recorded["mean"] == [123.675, 116.28, 103.53]
    assert recorded["std"] == [58.395, 57.12, 57.375]
    assert recorded["overrides"]["bn_epsilon"] == 1e-5
    # Rebuilt from the RunConfig alone, the model has the same structure and normalisation.
    rebuilt = run_config.build_model()
    assert [v.shape for v in rebuilt.weights] == [v.shape for v in restored.weights]
    assert (rebuilt.pixel_mean, rebuilt.pixel_std) == (mean, std)
    assert oct(os.stat(output).st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    value = os.umask(0)
    os.umask(value)
    return value


@pytest.mark.parametrize("name, layout", [
    ("cifar_like-legacy_bare", ("legacy", False, False)),
    ("cifar_like-zip_bare", ("zip", False, True)),
    ("cifar_like", ("zip", True, True)),
    ("imagenet_like", ("legacy", True, True))])
def test_checkpoint_layouts(tmp_path, name, layout):
    # Legacy (torch < 1.6, as the 2018 release) and zip files, bare state_dicts and the
    # release's {"state_dict": ...} with `module.`; 2018 files (torch 0.4.0) had no
    # num_batches_tracked.
    fixture = fixtures.release(name)
    metadata = fixture.metadata
    assert (metadata["format"], metadata["nested"], metadata["counters"]) == layout
    with TorchCheckpointReader(fixture.path) as reader:
        assert reader.format == layout[0]
        loaded = reader.load()
        assert ("state_dict" in loaded) == layout[1]
        names = list(release.extract_state_dict(loaded))
        assert any(name.endswith("num_batches_tracked") for name in names) == layout[2]
        assert names == list(fixture.state)
    _, output = _convert(tmp_path, fixture, {"dropout_rate": fixture.dropout_rate})
    model, _ = model_dir.restore_model(str(output))
    _assert_variables_equal_sources(model, fixture.state)


def test_torch_reader_needs_torch(monkeypatch):
    # reader="torch" is checked against the builtin reader by make_fixtures.py (which has
    # torch); here: without torch it says what to use instead.
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match="reader='builtin' needs nothing"):
        release.read_release_checkpoint(fixtures.path("release_tiny.pth"), reader="torch")


def test_builtin_reader_gives_the_saved_weights():
    fixture = fixtures.release("tiny-legacy")
    builtin, ignored = release.read_release_checkpoint(fixture.path)
    assert list(builtin) == list(fixture.state)
    for name, value in fixture.state.items():
        assert builtin[name].dtype == value.dtype, name
        np.testing.assert_array_equal(builtin[name], value)
    assert ignored == ()


# --- refusals --------------------------------------------------------------------------


def _refused(tmp_path, name, arch=IMAGENET_LIKE, match=None):
    directory = tmp_path / "out"
    output = directory / "never.keras"
    with pytest.raises(release.ReleaseConversionError, match=match) as info:
        release.convert_release(fixtures.path(f"{name}.pth"), output,
                                overrides=arch.model_overrides())
    _assert_written_nothing(directory, output)
    return info.value


def test_refusal_fixtures_hold_their_states():
    # The refusal files keep names, shapes and dtypes only (stride-0 views of one value).
    for name in ("refuse_missing_extra_shapes", "refuse_integer_bias", "refuse_resnet",
                 "refuse_cifar54"):
        want = fixtures.refusal_state(name)
        with TorchCheckpointReader(fixtures.path(f"{name}.pth")) as reader:
            state = release.extract_state_dict(reader.load())
            assert [(k, v.shape, v.dtype) for k, v in state.items()] == [
                (k, v.shape, str(v.dtype)) for k, v in want.items()], name


def test_missing_extra_and_wrongly_shaped_entries_are_all_named(tmp_path):
    error = _refused(tmp_path, "refuse_missing_extra_shapes")
    message = str(error)
    assert ("unused: [stack.1.bottleneck_block.3.extra, classifier.weight]; missing: "
            "[stack.2.bottleneck_block.5.weight, bn1.running_var]; wrong shape: "
            "stack.0.bottleneck_block.3.weight (checkpoint (6, 6, 5, 5) vs model "
            "(6, 6, 3, 3)), linear.weight (checkpoint (192, 10) vs model (10, 192))") in message
    assert "Nothing was written" in message
    assert error.unused == ["stack.1.bottleneck_block.3.extra", "classifier.weight"]
    assert error.missing == ["stack.2.bottleneck_block.5.weight", "bn1.running_var"]
    assert [name for name, _, _ in error.wrong_shape] == [
        "stack.0.bottleneck_block.3.weight", "linear.weight"]


def test_integer_weights_are_refused(tmp_path):
    _refused(tmp_path, "refuse_integer_bias", match=r"wrong dtype .*linear.bias \(int64\)")


def test_resnet_checkpoint_is_not_an_irevnet(tmp_path):
    error = _refused(tmp_path, "refuse_resnet", match="does not hold an i-RevNet state_dict")
    assert "conv1.weight" in str(error) and "fc.weight" in error.unused


def test_cifar_irevnet_into_the_imagenet_layout_is_another_architecture(tmp_path):
    error = _refused(tmp_path, "refuse_cifar54", match="another i-RevNet configuration")
    message = str(error)
    assert "checkpoint 54 blocks (widths 16 x18, 64 x18, 256 x18), head 512 -> 10 classes" \
        in message
    assert "model 4 blocks (widths 24 x2, 96 x2), head 192 -> 10 classes" in message
    assert "more]" in message  # Hundreds of names are summarised ...
    assert len(error.unused) > 200  # ... and all kept on the exception.


def test_pickled_module_is_refused_without_running_it(tmp_path):
    output = tmp_path / "never.keras"
    with pytest.raises(release.ReleaseConversionError,
                       match="pickled torch.nn.modules.container.Sequential object"):
        release.convert_release(fixtures.path("whole_module.pth"), output,
                                config_name="irevnet_tiny")
    _assert_written_nothing(tmp_path, output)


def test_corrupt_checkpoint_writes_nothing(tmp_path):
    path = tmp_path / "corrupt.pth"
    path.write_bytes(b"PK\x03\x04 this was a zip once" + os.urandom(200))
    output = tmp_path / "out" / "never.keras"
    with pytest.raises(CheckpointError, match="corrupt.pth"):
        release.convert_release(path, output, config_name="irevnet_tiny")
    _assert_written_nothing(tmp_path / "out", output)


def test_existing_output_needs_overwrite(tmp_path):
    fixture = fixtures.release("imagenet_like")
    output = tmp_path / "model.keras"
    output.write_text("precious")
    with pytest.raises(FileExistsError, match="overwrite"):
        release.convert_release(fixture.path, output, overrides=fixture.arch.model_overrides())
    assert output.read_text() == "precious"
    release.convert_release(fixture.path, output, overrides=fixture.arch.model_overrides(),
                            overwrite=True)
    model, _ = model_dir.restore_model(str(output))
    _assert_variables_equal_sources(model, fixture.state)


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
    """All 1,802 entries of the release's listing, `module.` prefixes, inside
    {"state_dict": ...}: 125,120,356 trainable parameters, each its source. The values are
    strided views of one shared random storage (make_fixtures.py), so the file is small."""
    state = fixtures.full_listing_state()
    assert [(k, v.shape, str(v.dtype)) for k, v in state.items()] == ref.read_tsv(TSV)
    output = tmp_path / "out" / "converted.keras"
    summary = release.convert_release(fixtures.path("release_irevnet301_full.pth"), output,
                                      overrides=ref.IREVNET301.model_overrides())
    assert summary.trainable_parameters == IREVNET301_TRAINABLE
    assert (summary.entries_mapped, summary.entries_ignored) == (1502, 300)
    model, run_config = model_dir.restore_model(str(output))
    assert (run_config.config_name, run_config.dataset, run_config.image_size,
            run_config.num_classes) == ("irevnet301", "imagenet2012", 224, 1000)
    assert sum(int(np.prod(v.shape)) for v in model.trainable_weights) == IREVNET301_TRAINABLE
    _assert_variables_equal_sources(model, state)
