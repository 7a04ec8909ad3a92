"""What encoded: the software and CPU features that choose F's kernels, recorded with every
export and `.keras` model, and compared with the machine at hand.

Why: `decode(encode(x))` is exact because decode recomputes F's bits exactly, which holds
for the same model, the same precision and the same kernels. The kernels are chosen by the
TensorFlow version, by whether oneDNN's custom operations are on (`TF_ENABLE_ONEDNN_OPTS`;
TensorFlow turns them on by default on x86 CPUs with AVX-512 VNNI/BF16 or AMX, and off
elsewhere) and by the CPU's instruction set. A Phi encoded where these differ from where it
is decoded may come back with grid points moved by F's rounding: on an Intel Xeon with AMX,
oneDNN on against off moved 159,542 of 196,608 values (irevnet_cifar, batch 64, float32;
docs/exactness.md).

    machine.describe()                      # this process: {"tensorflow": ..., "onednn": ...}
    machine.recorded(path)                  # what an export or .keras model recorded
    machine.differences(machine.recorded(path))   # [] when the kernels are chosen alike

An export records it in `assets.extra/irevnet_tf_export.json` ("written_on"), a `.keras`
file as the member `irevnet_tf_machine.json` of its zip archive (Keras ignores it). Both
describe the machine that wrote the file; a caller who keeps Phis from another machine
records `describe()` there and compares the two.

Keras backends: the record names the backend that ran F (`keras_backend`: "tensorflow",
"jax" or "torch") and its version (`backend_version`: TensorFlow's, jaxlib's or PyTorch's),
since each backend has kernels of its own (XLA's CPU compiler under JAX, ATen/oneDNN under
PyTorch). A record without `keras_backend` was written by TensorFlow (before the record
named the backend). On TensorFlow, `tensorflow` and `onednn` choose the kernels; on JAX and
PyTorch they are recorded for people but choose nothing. A Phi decodes exactly only on the
backend, and with the kernels, that encoded it (docs/backends.md measures what moves).
"""

import json
import os
import platform
import zipfile

KERAS_MEMBER = "irevnet_tf_machine.json"
EXPORT_KEY = "written_on"
# CPU features TensorFlow's and oneDNN's CPU kernels dispatch on (x86 names of
# /proc/cpuinfo); the others do not change which kernel computes F.
KERNEL_CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw",
                    "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16",
                    "amx_int8", "asimd", "sve")
# The entries that choose kernels; `cpu` (the model name) is for people. The TensorFlow
# entries choose them only where TensorFlow runs F (`keras_backend` "tensorflow").
KERNEL_KEYS = ("keras_backend", "backend_version", "tensorflow", "onednn", "machine",
               "cpu_flags")
TENSORFLOW_KEYS = ("tensorflow", "onednn")


def _cpu():
    """`(model name, sorted kernel-relevant flags)` from /proc/cpuinfo (Linux), else what
    `platform` knows and no flags."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key == "model name" and value.strip():
                    name = value.strip()
                elif key in ("flags", "features"):
                    flags.update(value.split())
                if not line.strip() and flags:
                    break  # The first processor describes them all.
    except OSError:
        pass
    return name, sorted(flag for flag in flags if flag in KERNEL_CPU_FLAGS)


def onednn_enabled():
    """Whether this TensorFlow runs oneDNN's custom CPU operations (its default depends on
    the CPU; `TF_ENABLE_ONEDNN_OPTS=0|1` decides when set)."""
    try:  # Private, and the only way TensorFlow says what it decided.
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:  # pragma: no cover
        return None
    return bool(_pywrap_util_port.IsMklEnabled())


def _backend():
    """`(Keras backend name, the version of the library that runs its kernels)`."""
    import keras

    name = keras.backend.backend()
    if name == "jax":
        import jaxlib

        return name, f"jaxlib {jaxlib.__version__}"
    if name == "torch":
        import torch

        return name, f"torch {torch.__version__}"
    import tensorflow as tf

    return name, f"tensorflow {tf.__version__}"


def describe():
    """This process's kernel-choosing settings, as a JSON-able dict."""
    import tensorflow as tf

    cpu, flags = _cpu()
    backend, version = _backend()
    return {"keras_backend": backend, "backend_version": version,
            "tensorflow": tf.__version__, "onednn": onednn_enabled(),
            "tf_enable_onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
            "machine": platform.machine(), "system": platform.system(), "cpu": cpu,
            "cpu_flags": flags}


def _completed(record):
    """`record` with the backend entries of a record that predates them (TensorFlow's)."""
    record = dict(record)
    if record.get("keras_backend") is None:
        record["keras_backend"] = "tensorflow"
        record.setdefault("backend_version", f"tensorflow {record.get('tensorflow')}")
    return record


def differences(recorded, current=None):
    """What differs between `recorded` and `current` (default: this process) among the
    settings that choose F's kernels: `["onednn: True where recorded, False here", ...]`.
    Empty: decode here runs F's kernels as the recorded machine did. Another Keras backend
    is named as such (`keras_backend: 'jax' where recorded, 'tensorflow' here`), without
    TensorFlow's settings, which chose nothing on the other side."""
    recorded = _completed(recorded)
    current = _completed(describe() if current is None else current)
    found = []
    both_tensorflow = recorded["keras_backend"] == current["keras_backend"] == "tensorflow"
    for key in KERNEL_KEYS:
        if key in TENSORFLOW_KEYS and not both_tensorflow:
            continue  # TensorFlow's settings choose F's kernels only where it ran F.
        if recorded.get(key) != current.get(key):
            if key == "cpu_flags":
                gained = sorted(set(current.get(key) or ()) - set(recorded.get(key) or ()))
                lost = sorted(set(recorded.get(key) or ()) - set(current.get(key) or ()))
                parts = ([f"this CPU adds {', '.join(gained)}"] if gained else []) + (
                    [f"lacks {', '.join(lost)}"] if lost else [])
                found.append(f"cpu_flags: {' and '.join(parts)}")
            else:
                found.append(f"{key}: {recorded.get(key)!r} where recorded, "
                             f"{current.get(key)!r} here")
    return found


def add_to_keras_file(path, description=None):
    """Adds `description` (default `describe()`) to the `.keras` file at `path`."""
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(KERAS_MEMBER, json.dumps(description or describe(), indent=2,
                                                  sort_keys=True))


def recorded(path):
    """What an export version directory, a `.keras` file or a trainer's model directory
    (its model.keras) recorded about the machine that wrote it; None if nothing."""
    path = str(path)
    if os.path.isdir(path):
        metadata = os.path.join(path, "assets.extra", "irevnet_tf_export.json")
        if os.path.exists(metadata):
            with open(metadata, encoding="utf-8") as handle:
                return json.load(handle).get(EXPORT_KEY)
        path = os.path.join(path, "model.keras")
    if not os.path.isfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            if KERAS_MEMBER not in archive.namelist():
                return None
            return json.loads(archive.read(KERAS_MEMBER))
    except zipfile.BadZipFile:
        return None
