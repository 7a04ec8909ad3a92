"""build_dataset under tf.distribute: strategy.distribute_datasets_from_function on 2 CPUs."""

import numpy as np
import tensorflow as tf

from irevnet_tf import data


def test_mirrored_strategy_gets_per_replica_batches():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    distributed = strategy.distribute_datasets_from_function(
        lambda context: data.build_dataset("digits", "train", global_batch_size=8, image_size=8,
                                           is_training=True, input_context=context, seed=0))
    images, labels = next(iter(distributed))
    per_replica = strategy.experimental_local_results(images)
    assert len(per_replica) == 2
    assert all(tuple(replica.shape) == (4, 8, 8, 1) for replica in per_replica)
    assert all(replica.dtype == tf.int32 for replica in strategy.experimental_local_results(labels))
    assert not np.array_equal(per_replica[0].numpy(), per_replica[1].numpy())
