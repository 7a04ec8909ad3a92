"""Input pipelines: tensorflow-datasets, TFRecord shards, synthetic data and the embedded digits."""
