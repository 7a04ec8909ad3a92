"""The torch-free checkpoint reader against files written by torch.save (zip and legacy
format; committed fixtures from make_fixtures.py), malicious pickles and corrupt files."""

import os
import pickle
import struct
import zipfile

import numpy as np
import pytest

from irevnet_tf.conversion.torch_checkpoint import (CheckpointError, IgnoredObject,
                                                    TensorRecord, TorchCheckpointReader,
                                                    load_torch_checkpoint)
from tests.conversion import fixtures


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_reads_what_torch_save_wrote(legacy):
    # torch.save({"state_dict": <every tensor kind>, "epoch": 7, "best_prec1": 74.018,
    #             "args": argparse.Namespace(lr=0.1), "name": "i-revnet"}), see make_fixtures.
    expected = fixtures.expected_arrays("reader_kinds_expected.npz")
    path = fixtures.path(f"reader_kinds_{'legacy' if legacy else 'zip'}.pth")

    with TorchCheckpointReader(path) as reader:
        checkpoint = reader.load()
        assert reader.format == ("legacy" if legacy else "zip")
        assert (checkpoint["epoch"], checkpoint["best_prec1"], checkpoint["name"]) == (
            7, 74.018, "i-revnet")
        # The pickled argparse.Namespace is never imported: an inert placeholder.
        assert isinstance(checkpoint["args"], IgnoredObject)
        assert reader.ignored_globals == {"argparse.Namespace"}
        state_dict = checkpoint["state_dict"]
        assert list(state_dict) == list(expected)
        for name, want in expected.items():
            record = state_dict[name]
            assert isinstance(record, TensorRecord)
            assert record.shape == want.shape, name
            got = record.numpy()
            assert got.dtype == want.dtype, name
            np.testing.assert_array_equal(got, want, err_msg=name)


def test_load_torch_checkpoint_reads_eagerly():
    expected = fixtures.expected_arrays("reader_kinds_expected.npz")
    loaded = load_torch_checkpoint(fixtures.path("reader_kinds_bare.pt"))
    assert list(loaded) == list(expected)
    for name, want in expected.items():
        np.testing.assert_array_equal(loaded[name], want)


def test_values_need_an_open_reader():
    with TorchCheckpointReader(fixtures.path("reader_w4x4.pth")) as reader:
        record = reader.load()["w"]
    with pytest.raises(CheckpointError, match="closed"):
        record.numpy()


class _RunsShellCommand:
    """What a malicious checkpoint pickles: unpickling it would call os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _zip_checkpoint(path, payload, prefix="archive"):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{prefix}/data.pkl", pickle.dumps(payload, protocol=2))
        archive.writestr(f"{prefix}/byteorder", "little")
        archive.writestr(f"{prefix}/version", "3\n")


def test_malicious_zip_pickle_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    _zip_checkpoint(path, {"state_dict": {"w": _RunsShellCommand(marker)}})
    with TorchCheckpointReader(path) as reader:
        checkpoint = reader.load()
    assert not marker.exists()
    assert isinstance(checkpoint["state_dict"]["w"], IgnoredObject)
    assert any(name.endswith(".system") for name in reader.ignored_globals)


def test_malicious_legacy_pickle_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil_legacy.pth"
    with open(path, "wb") as handle:
        for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(header, handle, protocol=2)
        pickle.dump({"state_dict": _RunsShellCommand(marker)}, handle, protocol=2)
        pickle.dump([], handle, protocol=2)
    with TorchCheckpointReader(path) as reader:
        checkpoint = reader.load()
    assert not marker.exists()
    assert isinstance(checkpoint["state_dict"], IgnoredObject)


@pytest.mark.parametrize("content, match", [
    (b"", "neither a zip nor a legacy"),
    (b"definitely not a checkpoint" * 10, "neither a zip nor a legacy"),
    (pickle.dumps({"a": 1}), "not a torch.save file"),
])
def test_not_a_checkpoint(tmp_path, content, match):
    path = tmp_path / "file.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        with TorchCheckpointReader(path) as reader:
            reader.load()


def test_zip_without_data_pkl(tmp_path):
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(CheckpointError, match="not a torch.save file"):
        TorchCheckpointReader(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no file"):
        TorchCheckpointReader(tmp_path / "absent.pth")


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_truncated_file(tmp_path, legacy):
    path = tmp_path / "whole.pth"
    data = open(fixtures.path(f"reader_w64_{'legacy' if legacy else 'zip'}.pth"), "rb").read()
    path.write_bytes(data[: len(data) - 1000])
    with pytest.raises(CheckpointError):
        with TorchCheckpointReader(path) as reader:
            reader.load()["state_dict"]["w"].numpy()


def test_storage_record_of_wrong_size(tmp_path):
    source = fixtures.path("reader_w4x4.pth")
    broken = tmp_path / "broken.pth"
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(broken, "w") as copy:
        for info in original.infolist():
            data = original.read(info.filename)
            if "/data/" in info.filename:
                data = data[:-4]
            copy.writestr(info.filename, data)
    with TorchCheckpointReader(broken) as reader:
        record = reader.load()["w"]
        assert record.shape == (4, 4)  # The pickle alone is intact ...
        with pytest.raises(CheckpointError, match="bytes"):  # ... the values are not.
            record.numpy()


def _opcodes_pickle(size, stride, storage_numel, set_state=False):
    """A hand-assembled data.pkl: {"w": tensor of `size`/`stride` on a FloatStorage};
    `set_state` then tries to move the tensor's offset with pickle's BUILD."""
    def text(value):
        data = value.encode()
        return b"X" + struct.pack("<I", len(data)) + data

    def global_(module, name):
        return b"c" + module.encode() + b"\n" + name.encode() + b"\n"

    def small_ints(values):
        return b"(" + b"".join(b"K" + bytes([v]) for v in values) + b"t"

    return (b"\x80\x02}" + text("w") + global_("torch._utils", "_rebuild_tensor_v2")
            + b"((" + text("storage") + global_("torch", "FloatStorage") + text("0")
            + text("cpu") + b"K" + bytes([storage_numel]) + b"tQ" + b"K\x00"
            + small_ints(size) + small_ints(stride) + b"\x89"
            + global_("collections", "OrderedDict") + b")R" + b"tR"
            + (b"N}" + text("_offset") + b"Kds\x86b" if set_state else b"") + b"s.")


@pytest.mark.parametrize("size, stride, ok", [((2, 2), (2, 1), True), ((3, 3), (3, 1), False)])
def test_tensor_must_lie_inside_its_storage(tmp_path, size, stride, ok):
    path = tmp_path / "handmade.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", _opcodes_pickle(size, stride, storage_numel=4))
        archive.writestr("archive/data/0", np.arange(4, dtype="<f4").tobytes())
    with TorchCheckpointReader(path) as reader:
        if ok:  # No byteorder record (files before torch 1.10): little-endian.
            np.testing.assert_array_equal(reader.load()["w"].numpy(), [[0, 1], [2, 3]])
        else:
            with pytest.raises(CheckpointError, match="reaches element 9 of storage '0'"):
                reader.load()


def test_pickle_cannot_rewrite_a_checked_tensor(tmp_path):
    path = tmp_path / "handmade.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", _opcodes_pickle((2, 2), (2, 1), 4, set_state=True))
        archive.writestr("archive/data/0", np.arange(4, dtype="<f4").tobytes())
    with pytest.raises(CheckpointError, match="set the state of a TensorRecord"):
        with TorchCheckpointReader(path) as reader:
            reader.load()


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_reads_a_module_state_dict_with_its_metadata(legacy):
    # A real module's state_dict carries `_metadata` (set by pickle's BUILD) and the
    # DataParallel prefix, as the release's does.
    expected = fixtures.expected_arrays("reader_module_expected.npz")
    path = fixtures.path(f"reader_module_{'legacy' if legacy else 'zip'}.pth")
    loaded = load_torch_checkpoint(path)["state_dict"]
    assert list(loaded) == list(expected) == [
        "module.0.weight", "module.0.bias", "module.0.running_mean", "module.0.running_var",
        "module.0.num_batches_tracked", "module.2.weight"]
    for name, want in expected.items():
        assert loaded[name].dtype == want.dtype, name
        np.testing.assert_array_equal(loaded[name], want)
    with TorchCheckpointReader(path) as reader:
        assert "module.0" in reader.load()["state_dict"]._metadata
