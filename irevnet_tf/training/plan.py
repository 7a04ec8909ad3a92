"""TrainingPlan: a TrainConfig resolved against the data set and the replicas into step counts.

Everything the loop needs in steps (total, warm-up, decay boundaries, evaluation and
checkpoint intervals) and in sizes (global batches, image size, classes) is derived
here once, so the rules are in one place and testable without a model or a device.
"""

import dataclasses
import math
from typing import Optional, Tuple

from irevnet_tf import configs
from irevnet_tf.training import recipes
from irevnet_tf.training.errors import FlagError

# Without a length or boundaries, a run takes the paper's, scaled to its batch.
PAPER = recipes.IMAGENET_PAPER

# Evaluation and checkpoint interval when the training split's size (an epoch) is unknown.
STEPS_WITHOUT_EPOCHS = 1000


@dataclasses.dataclass(frozen=True)
class TrainingPlan:
    """Derived sizes and step counts of a run (all steps are optimizer steps)."""

    global_batch_size: int
    eval_batch_size: int
    image_size: int
    channels: int
    num_classes: int
    steps_per_epoch: Optional[float]
    total_steps: int
    warmup_steps: int
    decay_boundaries: Tuple[int, ...]
    peak_learning_rate: float
    eval_every: int
    checkpoint_every: int
    eval_steps: int

    def to_dict(self):
        data = dataclasses.asdict(self)
        data["decay_boundaries"] = list(self.decay_boundaries)
        return data


def model_downsampling(config_name):
    """Total down-sampling (initial psi times strides) of a named configuration."""
    kwargs = configs.get_config(config_name)
    factor = max(kwargs.get("init_ds", 2), 1)
    for stride in kwargs["strides"]:
        factor *= stride
    return factor


def make_plan(config, info, num_replicas=1):
    """Resolves `config` (a validated TrainConfig) for data set `info` (DatasetInfo).

    Raises FlagError naming the flag when a size does not fit: the batch not divisible
    by the replicas, an image size the model cannot take, an evaluation split smaller
    than one batch.
    """
    global_batch = config.batch_size
    eval_batch = config.eval_batch_size or config.batch_size
    for name, batch in (("batch_size", global_batch), ("eval_batch_size", eval_batch)):
        if batch % num_replicas:
            raise FlagError(f"--{name}={batch} must be divisible by the number of replicas "
                            f"({num_replicas}): every replica gets the same share.")

    model_kwargs = configs.get_config(config.config)
    image_size = (config.image_size or getattr(info, "default_image_size", None)
                  or model_kwargs["input_shape"][0])
    downsampling = model_downsampling(config.config)
    if image_size % downsampling:
        raise FlagError(
            f"--image_size={image_size} must be divisible by {downsampling}, the total "
            f"down-sampling of --config={config.config} (initial psi times the strides).")

    if info.num_train_examples:
        steps_per_epoch = info.num_train_examples / global_batch
    else:
        steps_per_epoch = None
        for name in ("train_epochs", "warmup_epochs", "lr_decay_epochs"):
            if getattr(config, name) is not None:
                raise FlagError(f"--{name} needs the size of the training split, which "
                                f"--dataset={config.dataset} does not report; give the "
                                f"length in steps (--{name.replace('epochs', 'steps')}).")
    if config.train_steps is not None:
        total_steps = config.train_steps
    elif config.train_epochs is not None:
        total_steps = max(1, math.ceil(config.train_epochs * steps_per_epoch))
    else:
        # The paper's length in images (its steps at its batch), at this batch.
        total_steps = max(1, round(PAPER["train_steps"] * PAPER["batch_size"] / global_batch))

    if config.warmup_steps is not None:
        warmup_steps = config.warmup_steps
    else:
        warmup_steps = round((config.warmup_epochs or 0.0) * steps_per_epoch)
    if warmup_steps >= total_steps:
        raise FlagError(f"--warmup_steps/--warmup_epochs give {warmup_steps} warm-up steps, "
                        f"which must be fewer than the {total_steps} training steps.")

    if config.lr_schedule != "step":
        boundaries = ()
    elif config.lr_decay_steps is not None:
        boundaries = tuple(config.lr_decay_steps)
    elif config.lr_decay_epochs is not None:
        boundaries = tuple(max(1, round(e * steps_per_epoch)) for e in config.lr_decay_epochs)
        if any(b <= a for a, b in zip(boundaries, boundaries[1:])):
            raise FlagError(f"--lr_decay_epochs={list(config.lr_decay_epochs)} fall on the "
                            f"steps {list(boundaries)}: they must be distinct steps.")
    else:
        # The paper's boundaries as fractions of the run.
        boundaries = tuple(round(total_steps * b / PAPER["train_steps"])
                           for b in PAPER["lr_decay_steps"])
        boundaries = tuple(b for b in boundaries if 0 < b < total_steps)

    epoch_steps = max(1, round(steps_per_epoch)) if steps_per_epoch else STEPS_WITHOUT_EPOCHS
    eval_every = epoch_steps if config.eval_every is None else config.eval_every
    checkpoint_every = (epoch_steps if config.checkpoint_every is None
                        else config.checkpoint_every)

    if config.eval_steps is not None:
        eval_steps = config.eval_steps
    elif not info.num_eval_examples:
        raise FlagError(f"--eval_steps is required: --dataset={config.dataset} does not report "
                        f"the size of its evaluation split {info.eval_split!r}.")
    else:
        eval_steps = info.num_eval_examples // eval_batch
        if eval_steps < 1:
            raise FlagError(
                f"--eval_batch_size={eval_batch} is larger than the evaluation split "
                f"{info.eval_split!r} ({info.num_eval_examples} examples); lower it.")

    return TrainingPlan(
        global_batch_size=global_batch, eval_batch_size=eval_batch, image_size=image_size,
        channels=info.channels, num_classes=info.num_classes,
        steps_per_epoch=steps_per_epoch, total_steps=total_steps, warmup_steps=warmup_steps,
        decay_boundaries=boundaries,
        peak_learning_rate=config.base_learning_rate * global_batch / 256.0,
        eval_every=eval_every, checkpoint_every=checkpoint_every, eval_steps=eval_steps)
