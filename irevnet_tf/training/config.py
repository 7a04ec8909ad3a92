"""TrainConfig: every option of a training run, validated up front with errors that name the flag.

The field names are the flag names of `trainers/train_imagenet.py` (see
`irevnet_tf.training.flags`), so `TrainConfig(**flag_values)` is the whole command line,
and a library caller (the quickstart, the tests) passes the same names as keywords.
The defaults are the paper's ImageNet recipe for i-RevNet-301 (i-RevNet, ICLR 2018, section 4).
"""

import dataclasses
import math
import os
from typing import Optional, Tuple

from irevnet_tf import configs
from irevnet_tf.training.errors import FlagError

STRATEGIES = ("default", "one_device", "mirrored", "multi_worker", "tpu")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
LR_SCHEDULES = ("step", "cosine")

# The paper's ImageNet recipe: 600k iterations at batch 256, lr x0.1 every 160k iterations.
PAPER_BATCH_SIZE = 256
PAPER_TRAIN_STEPS = 600_000
PAPER_DECAY_EVERY = 160_000

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
        "irevnet301", "where", "Named i-RevNet configuration; known: "
        f"{', '.join(configs.config_names())}. irevnet301 is the paper's ImageNet model (b).")
    dataset: str = _setting(
        "imagenet2012", "where", "Data set: imagenet2012 (tensorflow-datasets, prepared under "
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
        256, "length", "Global batch size over all replicas (paper: 256). Must be divisible "
        "by the number of replicas.")
    eval_batch_size: Optional[int] = _setting(
        None, "length", "Global evaluation batch (default --batch_size). Evaluation drops the "
        "last partial batch; a divisor of the split size (e.g. 250 or 1000 for ImageNet's "
        "50,000) evaluates every image.")
    train_steps: Optional[int] = _setting(
        None, "length", "Training length in optimizer steps. Exclusive with --train_epochs; "
        "with neither, the paper's 600k steps at batch 256 (scaled to the same number of "
        "images at other batch sizes).")
    train_epochs: Optional[float] = _setting(
        None, "length", "Training length in epochs of the training split (the release: 128). "
        "Exclusive with --train_steps.")
    # --- Optimisation -----------------------------------------------------------------------
    lr_schedule: str = _setting(
        "step", "optimisation", "step: multiply by --lr_decay_factor at each decay boundary "
        "(the paper); cosine: cosine decay to 0 at the end of training.",
        choices=LR_SCHEDULES)
    base_learning_rate: float = _setting(
        0.1, "optimisation", "Learning rate per 256 images, scaled linearly with the global "
        "batch (lr = base * batch / 256; paper: 0.1 at batch 256).")
    warmup_steps: Optional[int] = _setting(
        None, "optimisation", "Linear warm-up steps (exclusive with --warmup_epochs; default "
        "none, as in the paper; large batches usually need about 5 epochs).")
    warmup_epochs: Optional[float] = _setting(
        None, "optimisation", "Linear warm-up in epochs (exclusive with --warmup_steps).")
    lr_decay_steps: Optional[Tuple[int, ...]] = _setting(
        None, "optimisation", "Step-schedule boundaries in steps, e.g. 160000,320000,480000. "
        "Default: the paper's boundaries (every 160k of 600k iterations) as the same "
        "fractions of the run.")
    lr_decay_epochs: Optional[Tuple[float, ...]] = _setting(
        None, "optimisation", "Step-schedule boundaries in epochs, e.g. 32,64,96 (the "
        "release). Exclusive with --lr_decay_steps.")
    lr_decay_factor: float = _setting(
        0.1, "optimisation", "Step-schedule multiplier at each boundary (paper: 0.1).")
    momentum: float = _setting(0.9, "optimisation", "SGD momentum (paper: 0.9).")
    weight_decay: float = _setting(
        1e-4, "optimisation", "Coupled L2 weight decay on every trainable weight, as "
        "torch.optim.SGD in the release (grad += wd * w before momentum; paper: 1e-4). Not "
        "Keras' decoupled weight_decay.")
    label_smoothing: float = _setting(
        0.0, "optimisation", "Label smoothing in [0, 1) (paper: 0).")
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
        _choice("strategy", self.strategy, STRATEGIES)
        _choice("precision", self.precision, PRECISIONS)
        _choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
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
        _positive_int("batch_size", self.batch_size)
        _positive_int("eval_batch_size", self.eval_batch_size, optional=True)
        _positive_int("image_size", self.image_size, optional=True)
        _positive_int("steps_per_loop", self.steps_per_loop)
        _positive_int("keep_checkpoints", self.keep_checkpoints)
        _positive_int("train_steps", self.train_steps, optional=True)
        _positive_int("eval_steps", self.eval_steps, optional=True)
        _non_negative_int("eval_every", self.eval_every, optional=True)
        _non_negative_int("checkpoint_every", self.checkpoint_every, optional=True)
        _non_negative_int("warmup_steps", self.warmup_steps, optional=True)
        _non_negative_int("summary_images", self.summary_images)
        _non_negative_int("seed", self.seed, optional=True)
        _positive_number("train_epochs", self.train_epochs, optional=True)
        _positive_number("base_learning_rate", self.base_learning_rate)
        _non_negative_number("warmup_epochs", self.warmup_epochs, optional=True)
        _number_in("momentum", self.momentum, 0.0, 1.0, high_open=True)
        _non_negative_number("weight_decay", self.weight_decay)
        _number_in("label_smoothing", self.label_smoothing, 0.0, 1.0, high_open=True)
        _number_in("lr_decay_factor", self.lr_decay_factor, 0.0, 1.0, low_open=True)
        _exclusive("train_steps", self.train_steps, "train_epochs", self.train_epochs)
        _exclusive("warmup_steps", self.warmup_steps, "warmup_epochs", self.warmup_epochs)
        _exclusive("lr_decay_steps", self.lr_decay_steps, "lr_decay_epochs",
                   self.lr_decay_epochs)
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


def _choice(name, value, choices):
    if value not in choices:
        raise FlagError(f"--{name}={value!r} is not accepted; choose one of: "
                        f"{', '.join(choices)}.")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(name, value, optional=False):
    if value is None and optional:
        return
    if not _is_int(value) or value < 1:
        raise FlagError(f"--{name} must be a positive integer, got {value!r}.")


def _non_negative_int(name, value, optional=False):
    if value is None and optional:
        return
    if not _is_int(value) or value < 0:
        raise FlagError(f"--{name} must be an integer >= 0, got {value!r}.")


def _is_number(value):
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _positive_number(name, value, optional=False):
    if value is None and optional:
        return
    if not _is_number(value) or value <= 0:
        raise FlagError(f"--{name} must be a number > 0, got {value!r}.")


def _non_negative_number(name, value, optional=False):
    if value is None and optional:
        return
    if not _is_number(value) or value < 0:
        raise FlagError(f"--{name} must be a number >= 0, got {value!r}.")


def _number_in(name, value, low, high, low_open=False, high_open=False):
    ok = _is_number(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise FlagError(f"--{name} must be in {interval}, got {value!r}.")


def _exclusive(name_a, value_a, name_b, value_b):
    if value_a is not None and value_b is not None:
        raise FlagError(f"--{name_a} and --{name_b} are mutually exclusive; give one of them.")


def _parse_increasing(name, values, kind):
    parsed = []
    for value in values:
        try:
            number = kind(str(value).strip()) if isinstance(value, str) else value
            if kind is int and not _is_int(number):
                raise ValueError
            if not _is_number(number) or number <= 0:
                raise ValueError
        except ValueError:
            raise FlagError(f"--{name} must be a comma-separated list of positive "
                            f"{'integers' if kind is int else 'numbers'}, got {value!r} in "
                            f"{list(values)!r}.") from None
        parsed.append(kind(number))
    if any(b <= a for a, b in zip(parsed, parsed[1:])):
        raise FlagError(f"--{name} must be strictly increasing, got {parsed}.")
    return tuple(parsed)
