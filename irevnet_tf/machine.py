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
# The entries that choose kernels; `cpu` (the model name) is for people.
KERNEL_KEYS = ("tensorflow", "onednn", "machine", "cpu_flags")


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


def describe():
    """This process's kernel-choosing settings, as a JSON-able dict."""
    import tensorflow as tf

    cpu, flags = _cpu()
    return {"tensorflow": tf.__version__, "onednn": onednn_enabled(),
            "tf_enable_onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
            "machine": platform.machine(), "system": platform.system(), "cpu": cpu,
            "cpu_flags": flags}


def differences(recorded, current=None):
    """What differs between `recorded` and `current` (default: this process) among the
    settings that choose F's kernels: `["onednn: True where recorded, False here", ...]`.
    Empty: decode here runs F's kernels as the recorded machine did."""
    current = describe() if current is None else current
    found = []
    for key in KERNEL_KEYS:
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
