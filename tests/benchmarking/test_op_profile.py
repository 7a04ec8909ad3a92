"""op_profile: the categories of ops named by hand, and a profile of a small graph whose ops
are known (a convolution, a batch norm, a cast, the stream's rounding and sum)."""

import numpy as np
import pytest
import tensorflow as tf

from irevnet_tf.benchmarking import op_profile
from irevnet_tf.layers.fixed_point import STREAM_SCOPE, FixedPoint


@pytest.mark.parametrize("name,op_type,category", [
    ("block/bottleneck/conv1/convolution", "_MklNativeFusedConv2D", "convolution"),
    ("gradient_tape/block/conv3/Conv2DBackpropFilter", "Conv2DBackpropFilter", "convolution"),
    ("block/bottleneck/bn1/FusedBatchNormV3", "_FusedBatchNormEx", "batch norm + ReLU"),
    ("block/bottleneck/preact_bn/batchnorm/mul", "Mul", "batch norm + ReLU"),
    ("gradient_tape/block/ReluGrad", "ReluGrad", "batch norm + ReLU"),
    ("block/bottleneck/conv1/Cast", "Cast", "casts"),
    ("stage1_block1/stream_1/Round", "Round", "stream: round"),
    ("stage1_block1/stream/Max", "Max", "stream: checks"),
    ("stage1_block1/stream_2/Cast", "Cast", "stream: casts"),
    ("stage1_block1/stream_3/add", "AddV2", "stream: integer add"),
    ("stage1_block1/stream/clip_by_value/Minimum", "Minimum", "stream: saturation"),
    ("stage1_block1/psi/SpaceToDepth", "SpaceToDepth", "data movement"),
    ("momentum_sgd/ResourceApplyKerasMomentum", "ResourceApplyKerasMomentum",
     "variables and optimizer"),
    ("gradient_tape/block/mul_3", "Mul", "other element-wise"),
    ("streamline/Mul", "Mul", "other element-wise"),  # Not the stream's scope.
])
def test_categories(name, op_type, category):
    assert op_profile.categorize(name, op_type) == category


def test_breakdown_of_a_known_graph():
    grid = FixedPoint(18)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.standard_normal((4, 16, 16, 8)), tf.float32)
    kernel = tf.constant(rng.standard_normal((3, 3, 8, 8)) * 0.1, tf.float32)
    ones, zeros = tf.ones([8]), tf.zeros([8])
    stream = tf.constant(rng.integers(-1000, 1000, (4, 16, 16, 8)), tf.int32)

    @tf.function
    def function():
        h = tf.nn.conv2d(images, kernel, 1, "SAME")
        with tf.name_scope("head_bn"):
            h, _, _ = tf.compat.v1.nn.fused_batch_norm(h, ones, zeros, mean=zeros,
                                                       variance=ones, is_training=False)
        h = tf.cast(tf.cast(h, tf.bfloat16), tf.float32)
        q = grid.round_residual(h, like=tf.zeros([1], tf.int32), owner="test")
        return grid.add(stream, q, owner="test")

    function()
    records = op_profile.profile_ops(function, calls=2)
    assert records and all(seconds >= 0 for _, _, seconds in records)
    seconds = op_profile.breakdown(records, wall_seconds=1.0)
    assert set(seconds) == set(op_profile.CATEGORIES) | {"overhead"}
    for category in ("convolution", "casts", "stream: round", "stream: checks",
                     "stream: casts", "stream: integer add"):
        assert seconds[category] > 0, (category, seconds)
    assert seconds["overhead"] == pytest.approx(
        1.0 - sum(seconds[c] for c in op_profile.CATEGORIES))
    # Every stream op carries the scope that the profile reads.
    assert any(STREAM_SCOPE in name.split("/")[0] for name, _, _ in records)
