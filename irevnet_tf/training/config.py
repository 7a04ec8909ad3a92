"""TrainConfig: every option of a training run, validated up front with errors that name the flag.

The field names are the flag names of `trainers/train_imagenet.py` (see
`irevnet_tf.training.flags`), so `TrainConfig(**flag_values)` is the whole command line,
and a library caller (the quickstart, the tests) passes the same names as keywords.
The defaults are the paper's ImageNet recipe for i-RevNet-301, read from its one declaration,
`irevnet_tf.training.recipes.IMAGENET_PAPER`.
"""

import dataclasses
import os
from typing import Optional, Tuple

from irevnet_tf import configs, validation
from irevnet_tf.training import recipes
from irevnet_tf.training.errors import FlagError

STRATEGIES = ("default", "one_device", "mirrored", "multi_worker", "tpu")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
LR_SCHEDULES = ("step", "cosine")

# The defaults: the paper's recipe. Its length and decay boundaries are not defaults (a run
# at another batch size scales them, see `irevnet_tf.training.plan`), so they stay derived.
PAPER = recipes.IMAGENET_PAPER

# The flag groups of `--help`, in order: (key, title).
GROUPS = (("where", "Where and on what"), ("length", "Length and batch"),
          ("optimisation", "Optimisation"), ("computation", "Computation"),
          ("loop", "Loop, evaluation, checkpoints"))


def _setting(default, group, help_text, choices=None):
    """A TrainConfig field that also declares its flag: `--<field name>` with this default,
    help text, `--help` group and, for enums, accepted values (`irevnet_tf.training.flags`
    makes the flags from these fields, so each setting is declared once)."""
    return dataclasses.field(default=default, metadata={
        "help": help_text, "group": group, "choices": tuple(choices) if choices else None})


@dataclasses.dataclass
class TrainConfig:
    """Options of one training run (the flags of trainers/train_imagenet.py).

    Each field declares its flag: its help text is `dataclasses.fields(TrainConfig)[i]
    .metadata["help"]`, and `irevnet_tf.training.flags` defines the flags from the fields. `None` means
    "derive it": e.g. `image_size=None` takes the data set's default size,
    `jit_compile=None` compiles with XLA on TPUs only, and neither `train_steps` nor
    `train_epochs` trains for the paper's 600k steps at batch 256 (scaled to the batch).
    """

    # --- Where and on what ---------------------------------------------------------------
    model_dir: Optional[str] = _setting(
        None, "where", "Required. Directory of the run: run_config.json (the configuration, "
        "written first), checkpoints/, TensorBoard summaries (train/, eval/) and model.keras at "
        "the end. Rerunning with the same directory resumes; a different configuration there "
        "is refused. Use shared storage (gs://...) for TPUs and multi-machine runs.")
    strategy: str = _setting(
        "default", "where", "Distribution: tpu (TPUStrategy on --tpu), mirrored (all local "
        "GPUs; all logical CPUs without GPUs), multi_worker (several machines, from "
        "TF_CONFIG), one_device (first GPU, else CPU), default (no distribution).",
        choices=STRATEGIES)
    tpu: Optional[str] = _setting(
        None, "where", "With --strategy=tpu: the Cloud TPU name, a grpc://host:8470 address, "
        "or 'local' on a TPU VM (default: $TPU_NAME, else local). Fails at once if no TPU is "
        "found.")
    config: str = _setting(
        PAPER["config"], "where", "Named i-RevNet configuration; known: "
        f"{', '.join(configs.config_names())}. {PAPER['config']} is the paper's ImageNet model "
        "(b).")
    dataset: str = _setting(
        PAPER["dataset"], "where", "Data set: imagenet2012 (tensorflow-datasets, prepared under "
        "--data_dir), imagenet_tfrecord (train-*/validation-* shards in --data_dir), any "
        "tensorflow-datasets image set (e.g. cifar10), synthetic (random, for speed tests: "
        "the configuration's image size and a small evaluation split) or digits (embedded, "
        "for demos). Classes, channels and the default image size come from the data set. "
        "ImageNet training augmentation is the paper's (random resized crop, horizontal "
        "flip); the release's colour jitter is left out.")
    data_dir: Optional[str] = _setting(
        None, "where", "Data directory of --dataset (tfds data_dir or the TFRecord shards).")
    image_size: Optional[int] = _setting(
        None, "where", "Training and evaluation image size (default: the data set's, 224 for "
        "ImageNet; for synthetic data the configuration's). Must be divisible by the model's "
        "total down-sampling (32 for irevnet301).")
    # --- Length and batch -----------------------------------------------------------------
    batch_size: int = _setting(
        PAPER["batch_size"], "length", "Global batch size over all replicas (paper: "
        f"{PAPER['batch_size']}). Must be divisible by the number of replicas.")
    eval_batch_size: Optional[int] = _setting(
        None, "length", "Global evaluation batch (default --batch_size). Evaluation drops the "
        "last partial batch; a divisor of the split size (e.g. 250 or 1000 for ImageNet's "
        "50,000) evaluates every image.")
    train_steps: Optional[int] = _setting(
        None, "length", "Training length in optimizer steps. Exclusive with --train_epochs; "
        f"with neither, the paper's {PAPER['train_steps']} steps at batch "
        f"{PAPER['batch_size']} (scaled to the same number of images at other batch sizes).")
    train_epochs: Optional[float] = _setting(
        None, "length", "Training length in epochs of the training split (the release: 128). "
        "Exclusive with --train_steps.")
    # --- Optimisation -----------------------------------------------------------------------
    lr_schedule: str = _setting(
        PAPER["lr_schedule"], "optimisation", "step: multiply by --lr_decay_factor at each decay boundary "
        "(the paper); cosine: cosine decay to 0 at the end of training.",
        choices=LR_SCHEDULES)
    base_learning_rate: float = _setting(
        PAPER["base_learning_rate"], "optimisation", "Learning rate per 256 images, scaled "
        "linearly with the global batch (lr = base * batch / 256; paper: "
        f"{PAPER['base_learning_rate']:g} at batch {PAPER['batch_size']}).")
    warmup_steps: Optional[int] = _setting(
        None, "optimisation", "Linear warm-up steps (exclusive with --warmup_epochs; default "
        "none, as in the paper; large batches usually need about 5 epochs).")
    warmup_epochs: Optional[float] = _setting(
        None, "optimisation", "Linear warm-up in epochs (exclusive with --warmup_steps).")
    lr_decay_steps: Optional[Tuple[int, ...]] = _setting(
        None, "optimisation", "Step-schedule boundaries in steps, e.g. "
        f"{','.join(map(str, PAPER['lr_decay_steps']))}. Default: the paper's boundaries "
        f"(at {', '.join(map(str, PAPER['lr_decay_steps']))} of {PAPER['train_steps']} "
        "steps) as the same fractions of the run.")
    lr_decay_epochs: Optional[Tuple[float, ...]] = _setting(
        None, "optimisation", "Step-schedule boundaries in epochs, e.g. 32,64,96 (the "
        "release). Exclusive with --lr_decay_steps.")
    lr_decay_factor: float = _setting(
        PAPER["lr_decay_factor"], "optimisation", "Step-schedule multiplier at each boundary "
        f"(paper: {PAPER['lr_decay_factor']:g}).")
    momentum: float = _setting(
        PAPER["momentum"], "optimisation", f"SGD momentum (paper: {PAPER['momentum']:g}).")
    weight_decay: float = _setting(
        PAPER["weight_decay"], "optimisation", "Coupled L2 weight decay on every trainable weight, as "
        "torch.optim.SGD in the release (grad += wd * w before momentum; paper: "
        f"{PAPER['weight_decay']:g}). Not "
        "Keras' decoupled weight_decay.")
    label_smoothing: float = _setting(
        PAPER["label_smoothing"], "optimisation", "Label smoothing in [0, 1) (paper: "
        f"{PAPER['label_smoothing']:g}).")
    # --- Computation ------------------------------------------------------------------------
    precision: str = _setting(
        "float32", "computation", "float32; mixed_bfloat16 (TPUs, recent CPUs/GPUs); "
        "mixed_float16 (GPUs, with dynamic loss scaling). The invertible stream stays "
        "float32.", choices=PRECISIONS)
    reversible: bool = _setting(
        True, "computation", "Memory-saving gradient: rebuild activations from the outputs "
        "in the backward pass instead of storing them (activation memory independent of "
        "depth, about 1.5x compute).")
    jit_compile: Optional[bool] = _setting(
        None, "computation", "Compile the replica steps with XLA (default: on for TPUs, off "
        "elsewhere).")
    # --- Loop, evaluation, checkpoints ------------------------------------------------------
    steps_per_loop: int = _setting(
        100, "loop", "Steps per call of the compiled training loop (one progress line each); "
        "larger amortises host overhead on TPUs. Evaluation reports progress every this many "
        "batches.")
    eval_every: Optional[int] = _setting(
        None, "loop", "Evaluate every this many steps (default: once per epoch; 0: only at "
        "the end).")
    eval_steps: Optional[int] = _setting(
        None, "loop", "Batches per evaluation (default: the whole evaluation split).")
    checkpoint_every: Optional[int] = _setting(
        None, "loop", "Save a checkpoint every this many steps (default: once per epoch; 0: "
        "only at the end and on SIGTERM).")
    keep_checkpoints: int = _setting(3, "loop", "Number of recent checkpoints to keep.")
    summary_images: int = _setting(
        4, "loop", "Images shown with their decode(encode(x)) reconstruction in TensorBoard "
        "at each evaluation (0: none).")
    seed: Optional[int] = _setting(
        None, "loop", "Seed of weights, data order and dropout (default: random; 0 with "
        "--deterministic).")
    deterministic: bool = _setting(
        False, "loop", "Deterministic ops and input pipeline: the same flags give the same "
        "weights, also across a restart (which replays the input up to the checkpoint). "
        "Slower.")

    def __post_init__(self):
        for name in ("lr_decay_steps", "lr_decay_epochs"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                if isinstance(value, str):
                    value = [v for v in value.split(",") if v.strip()]
                try:
                    value = tuple(value)
                except TypeError:
                    raise FlagError(f"--{name} must be a comma-separated list of numbers, "
                                    f"got {value!r}.") from None
                setattr(self, name, value)

    def validate(self):
        """Raises FlagError naming the first bad option; returns self."""
        if not self.model_dir or not str(self.model_dir).strip():
            raise FlagError("--model_dir is required: the directory that receives the run "
                            "configuration, checkpoints, summaries and model.keras.")
        if os.path.exists(str(self.model_dir)) and not os.path.isdir(str(self.model_dir)):
            # A file here would fail deep inside checkpointing, after other writes.
            raise FlagError(f"--model_dir={self.model_dir} is a file; it must name a "
                            "directory (created if missing). Nothing was written.")
        for name, choices in (("strategy", STRATEGIES), ("precision", PRECISIONS),
                              ("lr_schedule", LR_SCHEDULES)):
            validation.check_choice(getattr(self, name), f"--{name}", choices,
                                    error=FlagError)
        if self.config not in configs.CONFIGS:
            raise FlagError(f"--config={self.config!r} is not a known configuration; known: "
                            f"{', '.join(configs.config_names())}.")
        if not self.dataset or not str(self.dataset).strip():
            raise FlagError("--dataset must name a data set, e.g. imagenet2012, "
                            "imagenet_tfrecord, cifar10, synthetic or digits.")
        if self.tpu and self.strategy != "tpu":
            raise FlagError(f"--tpu={self.tpu!r} is only used with --strategy=tpu, got "
                            f"--strategy={self.strategy}.")
        if self.precision == "mixed_float16" and self.strategy == "tpu":
            raise FlagError("--precision=mixed_float16 is for GPUs; TPUs compute in bfloat16: "
                            "use --precision=mixed_bfloat16.")
        for name in ("batch_size", "steps_per_loop", "keep_checkpoints"):
            _int(name, getattr(self, name), 1)
        for name in ("eval_batch_size", "image_size", "train_steps", "eval_steps"):
            _int(name, getattr(self, name), 1, optional=True)
        for name in ("eval_every", "checkpoint_every", "warmup_steps", "seed"):
            _int(name, getattr(self, name), 0, optional=True)
        _int("summary_images", self.summary_images, 0)
        _number("train_epochs", self.train_epochs, 0, low_open=True, optional=True)
        _number("base_learning_rate", self.base_learning_rate, 0, low_open=True)
        _number("warmup_epochs", self.warmup_epochs, 0, optional=True)
        _number("momentum", self.momentum, 0.0, 1.0, high_open=True)
        _number("weight_decay", self.weight_decay, 0)
        _number("label_smoothing", self.label_smoothing, 0.0, 1.0, high_open=True)
        _number("lr_decay_factor", self.lr_decay_factor, 0.0, 1.0, low_open=True)
        for pair in (("train_steps", "train_epochs"), ("warmup_steps", "warmup_epochs"),
                     ("lr_decay_steps", "lr_decay_epochs")):
            validation.check_exclusive(*(item for name in pair for item in (
                f"--{name}", getattr(self, name))), error=FlagError)
        for name, kind in (("lr_decay_steps", int), ("lr_decay_epochs", float)):
            values = getattr(self, name)
            if values is None:
                continue
            if self.lr_schedule != "step":
                raise FlagError(f"--{name} only applies to --lr_schedule=step, got "
                                f"--lr_schedule={self.lr_schedule}.")
            parsed = _parse_increasing(name, values, kind)
            setattr(self, name, parsed)
        for name in ("reversible", "deterministic"):
            if not isinstance(getattr(self, name), bool):
                raise FlagError(f"--{name} must be true or false, got {getattr(self, name)!r}.")
        if self.jit_compile is not None and not isinstance(self.jit_compile, bool):
            raise FlagError(f"--jit_compile must be true, false or unset (auto: on for TPUs), "
                            f"got {self.jit_compile!r}.")
        return self

    @property
    def effective_seed(self):
        """The seed used: --seed, or 0 for --deterministic runs without one, else None."""
        if self.seed is None and self.deterministic:
            return 0
        return self.seed

    def use_jit(self):
        return self.strategy == "tpu" if self.jit_compile is None else self.jit_compile

    def to_dict(self):
        data = dataclasses.asdict(self)
        for name in ("lr_decay_steps", "lr_decay_epochs"):
            if data[name] is not None:
                data[name] = list(data[name])
        return data

    @classmethod
    def from_dict(cls, data):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FlagError(f"Unknown training option(s) {', '.join(unknown)}; known: "
                            f"{', '.join(sorted(known))}.")
        return cls(**data)


def _int(name, value, low, optional=False):
    # The flags' wording: "a positive integer" for >= 1, "an integer >= 0" for >= 0.
    what = "a positive integer" if low == 1 else f"an integer >= {low}"
    validation.check_int(value, f"--{name}", low, what=what, optional=optional,
                         error=FlagError)


def _number(name, value, low=None, high=None, optional=False, **bounds):
    validation.check_number(value, f"--{name}", low, high, optional=optional,
                            error=FlagError, **bounds)


def _parse_increasing(name, values, kind):
    parsed = []
    for value in values:
        try:
            number = kind(str(value).strip()) if isinstance(value, str) else value
            if kind is int and not validation.is_int(number):
                raise ValueError
            if not validation.is_number(number, 0, low_open=True):
                raise ValueError
        except ValueError:
            raise FlagError(f"--{name} must be a comma-separated list of positive "
                            f"{'integers' if kind is int else 'numbers'}, got {value!r} in "
                            f"{list(values)!r}.") from None
        parsed.append(kind(number))
    if any(b <= a for a, b in zip(parsed, parsed[1:])):
        raise FlagError(f"--{name} must be strictly increasing, got {parsed}.")
    return tuple(parsed)
