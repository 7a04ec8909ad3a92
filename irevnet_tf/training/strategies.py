"""Distribution strategies by name (`--strategy`), with early, explicit hardware checks.

- default: TensorFlow's default strategy (one device, no distribution machinery).
- one_device: the first GPU, else the CPU.
- mirrored: every local GPU (synchronous all-reduce); on a machine without GPUs, every
  logical CPU device (tests split the CPU into two).
- multi_worker: MultiWorkerMirroredStrategy over the machines listed in TF_CONFIG.
- tpu: TPUStrategy on `--tpu` (a Cloud TPU name, a grpc:// address, or "local" on a TPU VM).
"""

import glob
import json
import os
import socket

import tensorflow as tf
from absl import logging

from irevnet_tf.training.errors import FlagError, NoAcceleratorError


def create_strategy(name, tpu=None):
    """Returns the tf.distribute strategy `name`; raises FlagError/NoAcceleratorError early."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        _check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        return _tpu_strategy(tpu)
    raise FlagError(f"--strategy={name!r} is not accepted; choose one of: default, one_device, "
                    "mirrored, multi_worker, tpu.")


def _check_tf_config():
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise FlagError(
            "--strategy=multi_worker needs the TF_CONFIG environment variable on every worker, "
            'e.g. TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}}\'.')
    try:
        spec = json.loads(raw)
        cluster, task = spec["cluster"], spec["task"]
        task["type"], int(task["index"])
        if not isinstance(cluster, dict) or not cluster:
            raise ValueError("empty cluster")
    except (ValueError, KeyError, TypeError) as error:
        raise FlagError(f"--strategy=multi_worker: TF_CONFIG is not a valid cluster spec "
                        f"({error}); it needs 'cluster' and 'task' (type, index).") from None


def _tpu_strategy(tpu):
    tpu = tpu or os.environ.get("TPU_NAME") or "local"
    if tpu.startswith("grpc://"):
        _check_reachable(tpu)
    elif tpu == "local" and not _local_tpu_device_files():
        raise NoAcceleratorError(
            "--strategy=tpu: no TPU on this machine (no /dev/accel* or /dev/vfio devices, "
            "--tpu and TPU_NAME unset). Run on a Cloud TPU VM with tensorflow-tpu installed, "
            "pass --tpu=<TPU name or grpc://address:8470> for a TPU node, or choose "
            "--strategy=mirrored/one_device on GPUs or CPUs.")
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except Exception as error:  # The resolver raises many kinds; all mean "no TPU here".
        raise NoAcceleratorError(
            f"--strategy=tpu: could not find or initialise the TPU {tpu!r}: "
            f"{type(error).__name__}: {str(error).splitlines()[0][:300]}. Check --tpu (a Cloud "
            f"TPU name, grpc://address:8470, or local on a TPU VM) and that a TPU build of "
            f"TensorFlow is installed.") from None
    logging.info("TPU %s: %d cores", tpu, len(tf.config.list_logical_devices("TPU")))
    return tf.distribute.TPUStrategy(resolver)


def _local_tpu_device_files():
    return glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*")


def _check_reachable(address, timeout=10.0):
    host_port = address[len("grpc://"):]
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as error:
        raise NoAcceleratorError(
            f"--strategy=tpu: no TPU answers at --tpu={address} ({error}). Check the address "
            f"(grpc://host:8470) or pass the TPU's name.") from None


def is_chief(strategy):
    """Whether this process writes the model directory (the chief of a multi-worker run)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type in (None, "chief"):
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief


def worker_id(strategy):
    """`(task_type, task_id)` of this process, `("worker", 0)` outside multi-worker runs."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "worker", 0
    return resolver.task_type or "worker", resolver.task_id or 0


def is_multi_worker(strategy):
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    cluster = strategy.cluster_resolver.cluster_spec().as_dict()
    return sum(len(cluster.get(kind, ())) for kind in ("chief", "worker")) > 1


def is_tpu(strategy):
    return isinstance(strategy, (tf.distribute.TPUStrategy,
                                 tf.distribute.experimental.TPUStrategy))
