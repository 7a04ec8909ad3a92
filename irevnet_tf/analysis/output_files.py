"""Writing the analysis outputs: a writability probe, and atomic PNG, JSON and CSV writes.

Every file is written under a temporary name in its final directory and then renamed, so a
reader (or a crashed run) never sees half a file. Paths may be local or any file system
`tf.io.gfile` knows (gs://...).
"""

import csv
import io
import json
import math
import os
import uuid

import numpy as np
import tensorflow as tf

from irevnet_tf import files


def prepare_output_dir(output_dir):
    """Creates `output_dir` if needed and proves it writable by writing and removing a probe.

    Raises ValueError naming `output_dir` when it cannot be created or written, so that a run
    fails before any analysis work rather than after it.
    """
    if not output_dir:
        raise ValueError("output_dir: a directory path is required, got an empty value.")
    output_dir = str(output_dir)
    probe = os.path.join(output_dir, f".write-probe-{uuid.uuid4().hex}")
    try:
        tf.io.gfile.makedirs(output_dir)
        with tf.io.gfile.GFile(probe, "wb") as handle:
            handle.write(b"probe")
        tf.io.gfile.remove(probe)
    except (OSError, tf.errors.OpError) as error:
        raise ValueError(f"output_dir {output_dir!r} is not a writable directory: "
                         f"{getattr(error, 'message', None) or error}") from None
    return output_dir


def atomic_write_bytes(path, data):
    """Writes `data` to `path` atomically (`irevnet_tf.files`); a failed write raises
    `irevnet_tf.files.WriteError` naming the analysis file."""
    return files.write_bytes(path, data, what="an analysis file")


def to_jsonable(value):
    """`value` with numpy scalars and arrays turned into plain Python, and non-finite floats
    into strings ("inf", "nan"), so the JSON stays standard."""
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def write_json(path, data):
    """Writes `data` as indented JSON, atomically."""
    text = json.dumps(to_jsonable(data), indent=2, sort_keys=True) + "\n"
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_csv(path, rows, columns):
    """Writes `rows` (dicts) as CSV with the header `columns`, atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: to_jsonable(row.get(key)) for key in columns})
    return atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))
