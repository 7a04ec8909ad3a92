"""TensorBoard event files read back independently of the trainer's summary writer."""

import glob
import os


def read_events(directory):
    """{tag: [(step, value, plugin name)]} from the summary files in `directory`, by step."""
    import tensorflow as tf

    events = {}
    for path in glob.glob(os.path.join(directory, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tensor = tf.make_ndarray(value.tensor)
                events.setdefault(value.tag, []).append(
                    (event.step, tensor, value.metadata.plugin_data.plugin_name))
    return {tag: sorted(values, key=lambda v: v[0]) for tag, values in events.items()}
