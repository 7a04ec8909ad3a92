r"""Trains i-RevNet on ImageNet (or another image data set) on TPUs, GPUs or CPUs.

    python trainers/train_imagenet.py --strategy=tpu --tpu=local \
        --model_dir=gs://bucket/irevnet301 --data_dir=gs://bucket/tensorflow_datasets

The defaults are the paper's recipe for i-RevNet-301 (irevnet_tf.training.recipes.IMAGENET_PAPER):
SGD with momentum 0.9, coupled weight decay 1e-4, batch 256, learning rate 0.1 divided by 10
every 160k steps, 600k steps.
A quick look on a CPU (random images at the configuration's size, 3 steps):

    python trainers/train_imagenet.py --model_dir=/tmp/irevnet_speed --config=irevnet_cifar \
        --dataset=synthetic --batch_size=8 --train_steps=3

Every option is listed below; the settings are declared in irevnet_tf/training/config.py
and the loop itself is irevnet_tf/training/trainer.py. docs/training.md explains them.
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging

from irevnet_tf import cli
from irevnet_tf.data import InputDataError
from irevnet_tf.training import flags as training_flags
from irevnet_tf.training import trainer
from irevnet_tf.training.errors import (CheckpointMismatchError, LostWorkerError,
                                        NoAcceleratorError, NonFiniteLossError,
                                        UnreadableCheckpointError, WriteError)

training_flags.define_flags()
# `--help` lists the flags of this script's key modules only: the training flags are.
flags.adopt_module_key_flags(training_flags)
# The usage text (this docstring) ends with the flags by group; absl sorts them below.
__doc__ += "\n" + training_flags.groups_overview()
FLAGS = flags.FLAGS
# Exit status after a SIGTERM-triggered checkpoint: 128 + SIGTERM, like a killed process,
# so that schedulers restart the job instead of treating it as finished.
PREEMPTED_EXIT_CODE = 143


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    # A FlagError (bad flag value) leaves through cli.run: one line, exit status 2.
    config = training_flags.config_from_flags(FLAGS)
    try:
        result = trainer.train(config)
    except (NoAcceleratorError, NonFiniteLossError, CheckpointMismatchError,
            InputDataError, UnreadableCheckpointError, WriteError, LostWorkerError) as error:
        logging.error("%s", error)
        print(f"error: {error}", file=sys.stderr)
        if isinstance(error, LostWorkerError):
            # A normal exit waits at TensorFlow's shutdown barrier for the lost worker
            # (measured: 16 s more on 127.0.0.1); the cluster is gone, so leave at once.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)
        sys.exit(1)
    if result["preempted"]:
        sys.exit(PREEMPTED_EXIT_CODE)
    logging.info("Result: %s", result)


if __name__ == "__main__":
    cli.run(main)
