"""Faults a long run meets, injected into small in-process runs: unreadable checkpoints (truncated
or missing data shard, bad or missing index, a save killed part-way) and writes that fail
(checkpoint, summaries, model.keras, run configuration).

Each test checks the one-line message, that nothing earlier was lost, and that the rerun
resumes and ends bit-identical to an uninterrupted --deterministic run. The subprocess
faults (a real file-size limit, SIGKILL, a lost worker) are in test_fault_processes.py.
"""

import errno
import glob
import logging
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from irevnet_tf import files
from irevnet_tf import model_files
from irevnet_tf.training import trainer
from irevnet_tf.training.errors import UnreadableCheckpointError, WriteError
from tests.training import fake_data

INFO = fake_data.FakeInfo()
# 24 steps, a checkpoint every 6: ckpt-6, 12, 18, 24 (keep_checkpoints keeps them all).
OPTIONS = dict(config="irevnet_tiny", dataset="fake", batch_size=8, steps_per_loop=6,
               eval_every=0, checkpoint_every=6, eval_steps=1, base_learning_rate=1.6,
               lr_decay_steps=(18,), summary_images=0, seed=7, deterministic=True,
               train_steps=24, keep_checkpoints=5)


def run(model_dir, **options):
    return trainer.train(model_dir=str(model_dir), dataset_builder=fake_data.make_builder(INFO),
                         dataset_info=INFO, **{**OPTIONS, **options})


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted run: the result every resumed run must reproduce."""
    model_dir = tmp_path_factory.mktemp("straight") / "model"
    return model_dir, run(model_dir)


def copy_run(straight, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(straight[0], model_dir)
    os.remove(model_dir / "model.keras")
    return model_dir


def checkpoints(model_dir):
    return sorted(os.path.basename(p)[:-len(".index")]
                  for p in glob.glob(str(model_dir / "checkpoints" / "ckpt-*.index")))


def truncate_data(prefix):
    (shard,) = glob.glob(str(prefix) + ".data-*")
    with open(shard, "r+b") as handle:
        handle.truncate(100)


def remove_data(prefix):
    for shard in glob.glob(str(prefix) + ".data-*"):
        os.remove(shard)


def garble_index(prefix):
    with open(str(prefix) + ".index", "r+b") as handle:
        handle.seek(0)
        handle.write(b"\0garbage" * 8)


def remove_index(prefix):
    os.remove(str(prefix) + ".index")


def killed_during_save(prefix):
    """What SIGKILL during TensorFlow's save leaves: the shards still in `ckpt-N_temp/`, no
    `ckpt-N.*` yet (here: ckpt-24's files moved there and cut short)."""
    temp = str(prefix) + "_temp"
    os.makedirs(temp)
    for path in glob.glob(str(prefix) + ".*"):
        shutil.move(path, os.path.join(temp, "part-00000-of-00001" + path[len(str(prefix)):]))
    truncate_data(os.path.join(temp, "part-00000-of-00001"))


def killed_during_merge(prefix):
    """SIGKILL while the shards are merged into ckpt-N: the data there, the index half-written."""
    index = str(prefix) + ".index"
    with open(index, "r+b") as handle:
        handle.truncate(os.path.getsize(index) // 2)


@pytest.mark.parametrize("damage", [truncate_data, remove_data, garble_index, remove_index,
                                    killed_during_save, killed_during_merge])
def test_resume_falls_back_to_the_newest_readable_checkpoint(straight, tmp_path, caplog,
                                                             damage):
    model_dir = copy_run(straight, tmp_path)
    newest = model_dir / "checkpoints" / "ckpt-24"
    damage(newest)
    caplog.set_level(logging.WARNING)
    result = run(model_dir)

    assert result["weights_digest"] == straight[1]["weights_digest"]
    assert result["checkpoint"].endswith("ckpt-24")
    assert checkpoints(model_dir) == ["ckpt-12", "ckpt-18", "ckpt-24", "ckpt-6"]
    assert not glob.glob(str(model_dir / "checkpoints" / "*_temp*"))
    if damage is not killed_during_save:  # The damaged files are kept, not deleted.
        assert glob.glob(str(model_dir / "checkpoints" / "unreadable" / "ckpt-24.*"))
        warning = next(r.getMessage() for r in caplog.records
                       if "is unreadable" in r.getMessage())
        assert "ckpt-24" in warning and "moved it to" in warning and "ckpt-18" in warning
    assert tf.train.latest_checkpoint(str(model_dir / "checkpoints")).endswith("ckpt-24")


def test_no_readable_checkpoint_stops_and_moves_nothing(straight, tmp_path):
    model_dir = copy_run(straight, tmp_path)
    for name in checkpoints(model_dir):
        truncate_data(model_dir / "checkpoints" / name)
    before = sorted(os.listdir(model_dir / "checkpoints"))
    with pytest.raises(UnreadableCheckpointError) as caught:
        run(model_dir)
    message = str(caught.value)
    assert "\n" not in message
    assert str(model_dir / "checkpoints") in message and "ckpt-24" in message
    # Never silently from scratch, and the next attempt meets the same files.
    assert sorted(os.listdir(model_dir / "checkpoints")) == before


def test_a_first_save_killed_part_way_starts_afresh(straight, tmp_path, caplog):
    """Killed while merging the first checkpoint: its files exist, the state file does not.
    Nothing completed was lost, so the run starts afresh (and keeps the files aside)."""
    model_dir = copy_run(straight, tmp_path)
    for name in ("ckpt-12", "ckpt-18", "ckpt-24", "checkpoint"):
        for path in glob.glob(str(model_dir / "checkpoints" / name) + "*"):
            os.remove(path)
    killed_during_merge(model_dir / "checkpoints" / "ckpt-6")
    caplog.set_level(logging.WARNING)
    result = run(model_dir)
    assert result["weights_digest"] == straight[1]["weights_digest"]
    assert glob.glob(str(model_dir / "checkpoints" / "unreadable" / "ckpt-6.*"))
    assert any("a save that did not finish" in r.getMessage() and "the start" in r.getMessage()
               for r in caplog.records)


def test_restore_model_skips_an_unreadable_checkpoint(straight, tmp_path):
    model_dir = copy_run(straight, tmp_path)
    truncate_data(model_dir / "checkpoints" / "ckpt-24")
    model, run_config = model_files.restore_model(str(model_dir))
    expected = run_config.build_model()
    model_files.restore_weights(expected, str(model_dir / "checkpoints" / "ckpt-18"))
    for restored, value in zip(model.weights, expected.weights):
        np.testing.assert_array_equal(restored.numpy(), value.numpy(), err_msg=restored.path)
    # Read-only tools never move files.
    assert not os.path.exists(model_dir / "checkpoints" / "unreadable")


def disk_full(*args, **kwargs):
    raise tf.errors.ResourceExhaustedError(None, None, "tempstate123; No space left on device")


def test_failing_checkpoint_write_names_it_and_the_last_good_one(straight, tmp_path,
                                                                monkeypatch):
    model_dir = tmp_path / "model"
    real_save = tf.train.CheckpointManager.save

    def save_until_full(manager, checkpoint_number=None, **kwargs):
        if checkpoint_number == 18:  # Part-way: the shards directory is started, then fails.
            os.makedirs(os.path.join(manager.directory, "ckpt-18_temp"))
            with open(os.path.join(manager.directory, "ckpt-18_temp", "part"), "wb") as handle:
                handle.write(b"x" * 100)
            disk_full()
        return real_save(manager, checkpoint_number=checkpoint_number, **kwargs)

    monkeypatch.setattr(tf.train.CheckpointManager, "save", save_until_full)
    with pytest.raises(WriteError) as caught:
        run(model_dir)
    message = str(caught.value)
    assert "\n" not in message
    assert "checkpoint ckpt-18" in message and str(model_dir / "checkpoints") in message
    assert "No space left on device" in message and "tempstate" not in message
    assert f"last good checkpoint is {model_dir / 'checkpoints' / 'ckpt-12'}" in message
    assert checkpoints(model_dir) == ["ckpt-12", "ckpt-6"]
    assert not glob.glob(str(model_dir / "checkpoints" / "*_temp*"))

    monkeypatch.setattr(tf.train.CheckpointManager, "save", real_save)
    result = run(model_dir)  # Space freed: the same command resumes from ckpt-12.
    assert result["weights_digest"] == straight[1]["weights_digest"]


def test_failing_model_keras_write_keeps_the_checkpoint(straight, tmp_path, monkeypatch):
    model_dir = tmp_path / "model"
    real_save_model = keras.saving.save_model

    def half_then_full(model, path, *args, **kwargs):
        with open(path, "wb") as handle:
            handle.write(b"PK half a zip")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(keras.saving, "save_model", half_then_full)
    with pytest.raises(WriteError) as caught:
        run(model_dir)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"Could not write model.keras at {model_dir / 'model.keras'}: "
                              "No space left on device.")
    assert str(model_dir / "checkpoints" / "ckpt-24") in message
    assert not os.path.exists(model_dir / "model.keras")
    assert not glob.glob(str(model_dir / ".tmp-*"))
    assert checkpoints(model_dir)[-2:] == ["ckpt-24", "ckpt-6"]

    monkeypatch.setattr(keras.saving, "save_model", real_save_model)
    result = run(model_dir)
    assert result["weights_digest"] == straight[1]["weights_digest"]
    assert os.path.exists(result["keras_model"])


def test_failing_summary_write_names_the_summary_directory(tmp_path, monkeypatch):
    from irevnet_tf.training import progress

    def full(self, *args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")

    monkeypatch.setattr(progress.ProgressReporter, "train_loop", full)
    with pytest.raises(WriteError, match=r"^Could not write TensorBoard summaries at "
                       + str(tmp_path / "model" / "train").replace("/", r"\/")
                       + r": No space left on device\. The last good checkpoint is none"):
        run(tmp_path / "model")


def test_failing_run_config_write_is_one_line(tmp_path, monkeypatch):
    real_replace = os.replace

    def full(source, target):
        if str(target).endswith("run_config.json"):
            raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(WriteError, match="^Could not write the run configuration at .*"
                       "run_config.json: File too large"):
        run(tmp_path / "model")
    assert not glob.glob(str(tmp_path / "model" / ".tmp-*"))


# --- the helper itself ------------------------------------------------------------------------

def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path):
    path = tmp_path / "out" / "data.bin"
    files.write_bytes(path, b"old")
    with pytest.raises(WriteError, match=r"^Could not write the thing at .*data\.bin: boom"):
        with files.atomic_path(path, what="the thing") as temporary:
            with open(temporary, "wb") as handle:
                handle.write(b"new, half")
            raise OSError(errno.EIO, "boom")
    assert path.read_bytes() == b"old"
    assert os.listdir(path.parent) == ["data.bin"]
    files.write_text(path, "new")
    assert path.read_text() == "new" and oct(path.stat().st_mode & 0o777) != "0o600"


def test_publish_directory_replaces_only_when_asked(tmp_path):
    final = tmp_path / "1"
    for content in ("first", "second"):
        staging = files.staging_directory(tmp_path, ".tmp-")
        os.makedirs(staging)
        (tmp_path / staging / "f").write_text(content)
        if content == "second":
            with pytest.raises(FileExistsError):
                files.publish_directory(staging, str(final))
        files.publish_directory(staging, str(final), overwrite=True)
        assert (final / "f").read_text() == content
    assert sorted(os.listdir(tmp_path)) == ["1"]


def test_lost_task_is_read_from_tensorflow_messages():
    from irevnet_tf.training.strategies import lost_task

    heartbeat = ("Collective ops is aborted by: Error reported from /job:worker/task:1: The "
                 "following tasks are unhealthy (stopped sending heartbeats):\n"
                 "/job:worker/replica:0/task:1\n")
    assert lost_task(heartbeat, own=("worker", 0)) == ("worker", 1)
    reset = ("Collective ops is aborted by: recvmsg:Connection reset by peer\nAdditional GRPC "
             "error information from remote target /job:worker/replica:0/task:0 while calling")
    assert lost_task(reset, own=("worker", 1)) == ("worker", 0)
    assert lost_task("Deadline Exceeded", own=("worker", 1)) is None


@pytest.mark.parametrize("write, what", [
    (lambda path: __import__("irevnet_tf.analysis.output_files", fromlist=["x"]).write_json(
        path, {"a": 1}), "an analysis file"),
    (lambda path: __import__("irevnet_tf.serving.client_inputs", fromlist=["x"]).save_outputs(
        path, {"x": np.arange(3)}), "the answer's arrays"),
])
def test_analysis_and_client_writes_fail_in_one_line(tmp_path, monkeypatch, write, what):
    path = tmp_path / "out.json"
    path.write_text("earlier")

    def full(source, target):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(WriteError, match=f"^Could not write {what} at {path}: No space left"):
        write(str(path))
    assert path.read_text() == "earlier" and os.listdir(tmp_path) == ["out.json"]
