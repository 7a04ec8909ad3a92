"""Distribution strategies by name (`--strategy`), with early, explicit hardware checks.

- default: TensorFlow's default strategy (one device, no distribution machinery).
- one_device: the first GPU, else the CPU.
- mirrored: every local GPU (synchronous all-reduce); on a machine without GPUs, every
  logical CPU device (tests split the CPU into two).
- multi_worker: MultiWorkerMirroredStrategy over the machines listed in TF_CONFIG.
  A lost worker must not leave the others waiting for ever: every collective gives up after
  `collective_timeout_seconds()` (a worker that stopped answering without closing its
  connections), TensorFlow's coordination service declares a task lost after
  `heartbeat_timeout_seconds()` without a heartbeat, and a worker whose peer died outright
  sees its connection reset at once. `lost_workers_named` turns each of these into one
  `LostWorkerError` naming the lost task (see docs/faults.md for the measured bounds).
- tpu: TPUStrategy on `--tpu` (a Cloud TPU name, a grpc:// address, or "local" on a TPU VM).
"""

import contextlib
import glob
import json
import os
import re
import socket

import tensorflow as tf
from absl import logging

from irevnet_tf.training.errors import FlagError, LostWorkerError, NoAcceleratorError

# Bounds on waiting for another worker (seconds); the environment variables override them.
# A collective covers one training loop's all-reduce, so the bound must exceed the longest
# time one worker can spend alone between two collectives (none in this loop: saves and
# evaluations are collective too), with room for a slow shared file system.
COLLECTIVE_TIMEOUT_ENV = "IREVNET_COLLECTIVE_TIMEOUT_SECONDS"
HEARTBEAT_TIMEOUT_ENV = "IREVNET_HEARTBEAT_TIMEOUT_SECONDS"
DEFAULT_COLLECTIVE_TIMEOUT_SECONDS = 300
DEFAULT_HEARTBEAT_TIMEOUT_SECONDS = 60


def _seconds_from_env(name, default):
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
        if value <= 0:
            raise ValueError
    except ValueError:
        raise FlagError(f"{name}={raw!r}: expected a positive number of seconds.") from None
    return value


def collective_timeout_seconds():
    """How long a collective (all-reduce) waits for the other workers before failing."""
    return _seconds_from_env(COLLECTIVE_TIMEOUT_ENV, DEFAULT_COLLECTIVE_TIMEOUT_SECONDS)


def heartbeat_timeout_seconds():
    """How long the coordination service waits for a worker's heartbeat before failing."""
    return _seconds_from_env(HEARTBEAT_TIMEOUT_ENV, DEFAULT_HEARTBEAT_TIMEOUT_SECONDS)


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
        _configure_coordination_service()
        options = tf.distribute.experimental.CommunicationOptions(
            timeout_seconds=collective_timeout_seconds())
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
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


def _configure_coordination_service():
    """The coordination service MultiWorkerMirroredStrategy would start, with our heartbeat
    timeout (the strategy keeps a service configured before it is created)."""
    from tensorflow.python.distribute import multi_worker_util  # pylint: disable=g-direct-tensorflow-import
    from tensorflow.python.eager import context  # pylint: disable=g-direct-tensorflow-import

    try:
        from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    except ImportError:  # TensorFlow before 2.17 kept it under tsl/.
        try:
            from tensorflow.tsl.protobuf import coordination_config_pb2
        except ImportError:
            logging.warning("No coordination service settings in this TensorFlow; lost "
                            "workers are found by the collective timeout alone.")
            return
    if context.context().coordination_service is not None:
        return
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    cluster_spec = resolver.cluster_spec()
    if resolver.task_type not in ("chief", "worker"):
        return
    jobs = [coordination_config_pb2.CoordinatedJob(name=job, num_tasks=cluster_spec.num_tasks(job))
            for job in ("chief", "worker") if job in cluster_spec.jobs]
    try:
        context.context().configure_coordination_service(
            service_type="standalone",
            service_leader=multi_worker_util.coordination_leader(cluster_spec),
            coordinated_jobs=jobs,
            heartbeat_timeout_in_ms=int(heartbeat_timeout_seconds() * 1000))
    except TypeError as error:  # A TensorFlow whose signature differs: keep its defaults.
        logging.warning("Could not set the coordination service's heartbeat timeout (%s); "
                        "using TensorFlow's default.", error)


# Errors by which TensorFlow reports a peer that died, hung or was cut off.
_PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
                tf.errors.AbortedError, tf.errors.CancelledError, tf.errors.InternalError,
                tf.errors.UnknownError)
_TASK = re.compile(r"/job:(\w+)(?:/replica:\d+)?/task:(\d+)")


def lost_task(message, own=None):
    """The `(job, index)` a TensorFlow error message blames, other than `own`; else None."""
    for job, index in _TASK.findall(message or ""):
        if (job, int(index)) != own:
            return job, int(index)
    return None


def _coordination_leader(strategy):
    """`(job, index)` of the task that runs the coordination service, or None."""
    from tensorflow.python.distribute import multi_worker_util  # pylint: disable=g-direct-tensorflow-import

    try:
        leader = multi_worker_util.coordination_leader(strategy.cluster_resolver.cluster_spec())
    except (AttributeError, ValueError):
        return None
    return lost_task(leader)


@contextlib.contextmanager
def lost_workers_named(strategy, last_checkpoint):
    """In a multi-worker run, turns TensorFlow's errors about an unreachable peer (connection
    reset, collective timeout, missed heartbeats) into one `LostWorkerError` that names the
    lost task and says how to resume. `last_checkpoint()` gives the checkpoint to name."""
    if not is_multi_worker(strategy):
        yield
        return
    try:
        yield
    except _PEER_ERRORS as error:
        own = worker_id(strategy)
        text = getattr(error, "message", "") or str(error)
        task = lost_task(text, own)
        who = f"{task[0]} {task[1]}" if task else "another worker"
        if task is None and isinstance(error, tf.errors.DeadlineExceededError):
            # Heartbeats go to the coordination service's leader: when they time out without
            # naming a task, it is the leader that stopped answering.
            leader = _coordination_leader(strategy)
            if leader and leader != own:
                who = (f"{leader[0]} {leader[1]} (the coordination service leader, which "
                       "stopped answering heartbeats)")
        if task is None and "timeout" not in text.lower() and "heartbeat" not in text.lower() \
                and not isinstance(error, (tf.errors.UnavailableError,
                                           tf.errors.DeadlineExceededError)):
            raise  # Not about a peer: keep TensorFlow's own report.
        reason = next((line.strip() for line in text.splitlines()
                       if line.strip() and not line.startswith(("Detected at", "  File",
                                                                 "Graph execution"))),
                      type(error).__name__)[:200].rstrip(":. ")
        last = last_checkpoint()
        raise LostWorkerError(
            f"Lost {who} of the multi-worker run ({type(error).__name__}: {reason}); "
            f"{own[0]} {own[1]} stopped too. Restart every worker with the same command to "
            f"resume from {last or 'the start (no checkpoint was written yet)'}.") from None


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
