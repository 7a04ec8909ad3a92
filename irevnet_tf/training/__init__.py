"""Training: the distributed loop, schedules, checkpoints and the model directory.

`train(...)` runs what `trainers/train_imagenet.py` runs, in-process:

>>> from irevnet_tf import training
>>> result = training.train(model_dir="/tmp/digits", **training.recipes.DIGITS_QUICKSTART)
>>> result["eval_top1"], result["keras_model"]

`training.recipes` holds the paper's ImageNet and CIFAR-10 recipes and the quickstart's, each
declared once.
"""

from irevnet_tf.training import recipes
from irevnet_tf.training.config import TrainConfig
from irevnet_tf.training.errors import (CheckpointMismatchError, FlagError, NoAcceleratorError,
                                        NonFiniteLossError)
from irevnet_tf.model_files import RunConfig, restore_model
from irevnet_tf.training.optimizer import MomentumSGD
from irevnet_tf.training.trainer import Trainer, train

__all__ = ["CheckpointMismatchError", "FlagError", "NoAcceleratorError", "MomentumSGD",
           "NonFiniteLossError", "RunConfig", "TrainConfig", "Trainer", "recipes", "restore_model", "train"]
