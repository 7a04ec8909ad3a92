"""Writing files so that nothing is ever seen half-written, and a failed write says so in one line.

Every file the package writes (run configurations, `.keras` models, analysis outputs, client
answers) goes through `atomic_path`: it is written under a temporary name in its final
directory and renamed into place once complete, so a reader, a crash or a full disk leaves
either the old file or the new one, never half of one. Directories (SavedModel export
versions) are staged the same way and published by `publish_directory`.

A write that fails (no space left, a file-size limit, no permission, a lost file system)
raises `WriteError`, an `OSError` whose message is one line naming what was being written and
where, the reason, and what to do; the temporary file is removed first.

Paths may be local or any file system `tf.io.gfile` knows (gs://...). Remote object stores
have no atomic rename; there the file is written to `<path>.tmp` and renamed, which is the
best they offer.
"""

import contextlib
import os
import re
import shutil
import tempfile
import uuid

import tensorflow as tf

# Errors that mean "the write failed" (as opposed to a bug in what was being written).
WRITE_ERRORS = (OSError, tf.errors.OpError)


class WriteError(OSError):
    """A file or directory could not be written; the message names what, where and why.

    Attributes:
        what: what was being written ("checkpoint ckpt-20", "model.keras", ...).
        path: where.
        reason: the operating system's or TensorFlow's one-line reason.
    """

    def __init__(self, what, path, reason, advice=None):
        self.what, self.path, self.reason = what, os.fspath(path), reason
        self.advice = advice or ("Nothing earlier was changed; free space (or fix the "
                                 "permissions) and run the same command again.")
        super().__init__(f"Could not write {what} at {self.path}: {reason}. {self.advice}")

    def with_advice(self, advice):
        """The same error with another closing sentence (e.g. naming the last good checkpoint)."""
        return WriteError(self.what, self.path, self.reason, advice)


def reason_of(error):
    """A one-line reason from an OSError or a TensorFlow OpError (first line, bounded)."""
    if isinstance(error, WriteError):
        return error.reason
    if isinstance(error, OSError) and error.strerror:
        text = error.strerror
    else:
        text = getattr(error, "message", None) or str(error) or type(error).__name__
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    if isinstance(error, tf.errors.OpError) and "tempstate" in text:
        # TensorFlow's message names its private temporary file; the caller names the target.
        text = text.split(";")[-1].strip() or text
    text = re.sub(r"\s*\[Op:\w+\]", "", text)  # TensorFlow's op name says nothing to users.
    return text[:300].rstrip(". ")


def write_error(what, path, error, advice=None):
    """The `WriteError` for `error` raised while writing `what` at `path`."""
    return WriteError(what, path, reason_of(error), advice)


def _default_permissions(path):
    # mkstemp creates 0600 files; give the usual permissions (the umask applies).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _remove_quietly(path):
    try:
        if tf.io.gfile.isdir(path):
            tf.io.gfile.rmtree(path)
        elif tf.io.gfile.exists(path):
            tf.io.gfile.remove(path)
    except WRITE_ERRORS:
        pass


@contextlib.contextmanager
def atomic_path(path, what="file", suffix=""):
    """Yields a temporary path to write; on success it becomes `path` by one rename.

    Args:
        path: the final file (local or gs://...).
        what: how error messages name the file ("model.keras", "analysis file", ...).
        suffix: the temporary file's ending (writers such as Keras check it, e.g. ".keras").

    Raises:
        WriteError: the write or the rename failed; the temporary file is gone and an
            existing `path` is unchanged.
    """
    path = os.fspath(path)
    remote = "://" in path
    local_directory = None
    try:
        if remote:  # Written locally first (writers such as Keras need a local file).
            local_directory = tempfile.mkdtemp(prefix="irevnet-write-")
            temporary = os.path.join(local_directory, "file" + suffix)
        else:
            directory = os.path.dirname(os.path.abspath(path))
            os.makedirs(directory, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-",
                                                     suffix=suffix)
            os.close(descriptor)
    except WRITE_ERRORS as error:
        raise write_error(what, path, error) from None
    try:
        yield temporary
        if remote:
            staged = path + ".tmp"
            try:
                tf.io.gfile.copy(temporary, staged, overwrite=True)
                tf.io.gfile.rename(staged, path, overwrite=True)
            except BaseException:
                _remove_quietly(staged)
                raise
        else:
            _default_permissions(temporary)
            os.replace(temporary, path)
    except WriteError:
        raise  # Already names its file (e.g. a sidecar written inside the block).
    except WRITE_ERRORS as error:
        raise write_error(what, path, error) from None
    finally:
        if local_directory:
            shutil.rmtree(local_directory, ignore_errors=True)
        elif os.path.exists(temporary):
            os.remove(temporary)


def write_bytes(path, data, what="file"):
    """Writes `data` to `path` atomically; returns `path`. Raises WriteError."""
    with atomic_path(path, what) as temporary:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    return os.fspath(path)


def write_text(path, text, what="file"):
    """Writes `text` (UTF-8) to `path` atomically; returns `path`. Raises WriteError."""
    return write_bytes(path, text.encode("utf-8"), what)


def staging_directory(parent, prefix):
    """A fresh hidden directory name inside `parent` for `publish_directory` (not created)."""
    return os.path.join(os.fspath(parent), f"{prefix}{uuid.uuid4().hex[:8]}")


def publish_directory(staging_dir, final_dir, overwrite=False, what="directory"):
    """Renames the finished `staging_dir` to `final_dir` (same parent), atomically on POSIX.

    An existing `final_dir` is refused unless `overwrite`; then it is moved aside first and
    removed only once the new one is in place (restored if the rename fails). On object
    stores (gs://) TensorFlow renames object by object, the best those offer.

    Raises:
        FileExistsError: `final_dir` exists and not `overwrite`.
        WriteError: a rename failed; `final_dir` is as it was.
    """
    try:
        if not tf.io.gfile.exists(final_dir):
            tf.io.gfile.rename(staging_dir, final_dir)
            return final_dir
        if not overwrite:
            raise FileExistsError(f"{final_dir} appeared while writing {what}; nothing was "
                                  "replaced. Retry, or pass --overwrite.")
        retired = staging_directory(os.path.dirname(os.fspath(final_dir)), ".tmp-retired-")
        tf.io.gfile.rename(final_dir, retired)
        try:
            tf.io.gfile.rename(staging_dir, final_dir)
        except BaseException:
            tf.io.gfile.rename(retired, final_dir)
            raise
        tf.io.gfile.rmtree(retired)
        return final_dir
    except FileExistsError:
        raise
    except WRITE_ERRORS as error:
        raise write_error(what, final_dir, error) from None


def remove_quietly(path):
    """Removes a file or directory tree if it exists; failures are ignored (clean-up only)."""
    _remove_quietly(os.fspath(path))
