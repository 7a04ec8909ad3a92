"""Where a compiled function's time goes: TensorFlow's profiler, per op, grouped into categories.

    records = profile_ops(lambda: model.encode(images), calls=2)
    shares = breakdown(records)     # {"convolution": seconds per call, ...}

How the split is obtained: `tf.profiler.experimental` traces the calls; each TensorFlow op
the executor runs is one event on the host plane, named `op_name:op_type`, whose duration
is the op's wall time (its intra-op threads included). With one inter-op thread (the
benchmarks' setting) the executor runs one op at a time, so the events tile the call and
their sum is the call's time less the dispatch between ops (`breakdown` reports that rest
as "overhead" when given the call's wall time). Each op is put in one category by its
type and, for element-wise ops, by the name scope it was built in:

- convolution: every Conv2D kernel, forward and backward (TensorFlow's fused
  convolution + batch norm + ReLU kernels count here: the batch norm and ReLU they absorb
  cost nearly nothing);
- batch norm + ReLU: the batch-norm kernels and their gradients, ReLU and its gradient,
  and element-wise ops under a batch norm's name scope (`*bn*`);
- casts: dtype casts outside the stream (mixed precision's variable and activation casts);
- stream: the exact stream's own ops, built under `FixedPoint`'s name scope `stream`,
  split into round (scaling by 2**k and rounding), checks (the range and NaN/Inf
  reductions and their asserts), casts (int32 <-> float), integer add (the coupling's sum
  or difference), saturation (the unchecked path's clipping) and other;
- data movement: psi (space-to-depth), padding, concatenation, slicing;
- variables and optimizer: variable reads and updates;
- other element-wise: the rest (mostly gradient arithmetic), listed by type in
  `top_other`.

The profile has a cost of its own (about 1 us per op): compare shares within one profile,
and time the function unprofiled for its wall time.
"""

import collections
import glob
import os
import re
import shutil
import tempfile

STREAM_SCOPE = "stream"  # irevnet_tf.layers.fixed_point.STREAM_SCOPE (kept import-free).

CATEGORIES = (
    "convolution", "batch norm + ReLU", "casts", "stream: round", "stream: checks",
    "stream: casts", "stream: integer add", "stream: saturation", "stream: other",
    "data movement", "variables and optimizer", "other element-wise",
)

_STREAM_KINDS = {
    "Round": "round", "Mul": "round", "RealDiv": "round", "Div": "round",
    "Max": "checks", "Min": "checks", "Sum": "checks", "IsFinite": "checks",
    "Less": "checks", "Greater": "checks", "LogicalAnd": "checks", "Assert": "checks",
    "All": "checks", "Identity": "checks", "Abs": "checks",
    "Cast": "casts",
    "AddV2": "integer add", "Add": "integer add", "Sub": "integer add",
    "Maximum": "saturation", "Minimum": "saturation", "ClipByValue": "saturation",
    "Select": "saturation", "SelectV2": "saturation", "IsNan": "saturation",
    "ZerosLike": "saturation",
}
_DATA_MOVEMENT = {"SpaceToDepth", "DepthToSpace", "Pad", "PadV2", "MirrorPad", "ConcatV2",
                  "Concat", "StridedSlice", "StridedSliceGrad", "Slice", "Split", "SplitV",
                  "Reshape", "Transpose", "Pack", "Unpack", "Tile", "GatherV2"}
_STREAM = re.compile(re.escape(STREAM_SCOPE) + r"(_\d+)?")
_BN_SCOPE = re.compile(r"(^|/)[^/]*(bn|batch_?norm)[^/]*/", re.IGNORECASE)


def categorize(op_name, op_type):
    """The category (one of CATEGORIES) of an op, from its name and type."""
    scopes = op_name.split("/")[:-1]
    # TensorFlow numbers a scope opened again in the same parent: stream, stream_1, ...
    if any(_STREAM.fullmatch(scope) for scope in scopes):
        return "stream: " + _STREAM_KINDS.get(op_type, "other")
    if "Conv" in op_type:
        return "convolution"
    if "BatchNorm" in op_type or op_type.startswith(("Relu", "_MklRelu", "_MklNativeRelu")):
        return "batch norm + ReLU"
    if op_type == "Cast":
        return "casts"
    if op_type in _DATA_MOVEMENT or op_type.lstrip("_").startswith(
            ("MklNativePad", "MklPad")):
        return "data movement"
    if "Variable" in op_type or op_type.startswith("ResourceApply"):
        return "variables and optimizer"
    if _BN_SCOPE.search(op_name):
        return "batch norm + ReLU"
    return "other element-wise"


def _op_events(xspace):
    """(op_name, op_type, seconds) of every TensorFlow op event on the host planes."""
    for plane in xspace.planes:
        if not plane.name.startswith("/host:"):
            continue
        metadata = plane.event_metadata
        for line in plane.lines:
            for event in line.events:
                name = metadata[event.metadata_id].name
                # Op events are "name:type"; the executor's own events use "::" or none.
                if ":" not in name or "::" in name or name.startswith("__inference"):
                    continue
                op_name, _, op_type = name.rpartition(":")
                if not op_name or not op_type or " " in op_type:
                    continue
                yield op_name, op_type, event.duration_ps * 1e-12


def profile_ops(function, calls=2, logdir=None):
    """Runs `function` `calls` times under TensorFlow's profiler.

    Returns a list of `(op_name, op_type, seconds per call)`, one entry per op name (its
    events summed over the calls and divided by `calls`). Warm `function` up first: a
    profile of its tracing would measure Python.
    """
    import numpy as np
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    if calls < 1:
        raise ValueError(f"profile_ops: `calls` must be >= 1, got {calls!r}.")
    directory = logdir or tempfile.mkdtemp(prefix="irevnet_profile_")
    try:
        tf.profiler.experimental.start(directory)
        try:
            for _ in range(calls):
                tf.nest.map_structure(np.asarray, function())
        finally:
            tf.profiler.experimental.stop()
        paths = glob.glob(os.path.join(directory, "**", "*.xplane.pb"), recursive=True)
        if not paths:
            raise RuntimeError(f"profile_ops: the profiler wrote no trace under {directory}.")
        xspace = xplane_pb2.XSpace()
        with open(max(paths, key=os.path.getmtime), "rb") as file:
            xspace.ParseFromString(file.read())
    finally:
        if logdir is None:
            shutil.rmtree(directory, ignore_errors=True)
    totals = collections.defaultdict(float)
    for op_name, op_type, seconds in _op_events(xspace):
        totals[(op_name, op_type)] += seconds / calls
    return [(name, op_type, seconds) for (name, op_type), seconds in totals.items()]


def breakdown(records, wall_seconds=None):
    """Seconds per call by category (every category present, zeros included).

    With `wall_seconds` (the call's unprofiled time) the result also has "overhead": the
    part of the call no op accounts for (dispatch between ops; negative when the profile's
    own cost exceeds it).
    """
    result = dict.fromkeys(CATEGORIES, 0.0)
    for op_name, op_type, seconds in records:
        result[categorize(op_name, op_type)] += seconds
    if wall_seconds is not None:
        result["overhead"] = wall_seconds - sum(result[c] for c in CATEGORIES)
    return result


def top_other(records, count=5):
    """The `count` op types with the most time in "other element-wise", as (type, seconds)."""
    totals = collections.Counter()
    for op_name, op_type, seconds in records:
        if categorize(op_name, op_type) == "other element-wise":
            totals[op_type] += seconds
    return totals.most_common(count)
