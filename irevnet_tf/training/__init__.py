"""Training: the distributed loop, schedules, checkpoints and the model directory.

`train(...)` runs what `trainers/train_imagenet.py` runs, in-process:

>>> from irevnet_tf import training
>>> result = training.train(model_dir="/tmp/digits", config="irevnet_small",
...                         dataset="digits", batch_size=64, train_epochs=5,
...                         lr_schedule="cosine", weight_decay=5e-4)
>>> result["eval_top1"], result["keras_model"]
"""

from irevnet_tf.training.config import TrainConfig
from irevnet_tf.training.errors import (CheckpointMismatchError, FlagError, NoAcceleratorError,
                                        NonFiniteLossError)
from irevnet_tf.training.model_dir import RunConfig, restore_model
from irevnet_tf.training.trainer import Trainer, train

__all__ = ["CheckpointMismatchError", "FlagError", "NoAcceleratorError", "NonFiniteLossError",
           "RunConfig", "TrainConfig", "Trainer", "restore_model", "train"]
