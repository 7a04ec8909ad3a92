"""TrainConfig: every option of a training run, validated up front with errors that name the flag.

The field names are the flag names of `trainers/train_imagenet.py` (see
`irevnet_tf.training.flags`), so `TrainConfig(**flag_values)` is the whole command line,
and a library caller (the quickstart, the tests) passes the same names as keywords.
The defaults are the paper's ImageNet recipe for i-RevNet-301 (PAPER.md "Training recipe").
"""

import dataclasses
import math
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


@dataclasses.dataclass
class TrainConfig:
    """Options of one training run (the flags of trainers/train_imagenet.py).

    See `irevnet_tf.training.flags` for each option's documentation. `None` means
    "derive it": e.g. `image_size=None` takes the data set's default size,
    `jit_compile=None` compiles with XLA on TPUs only, and neither `train_steps` nor
    `train_epochs` trains for the paper's 600k steps at batch 256 (scaled to the batch).
    """

    model_dir: Optional[str] = None
    strategy: str = "default"
    tpu: Optional[str] = None
    config: str = "irevnet301"
    dataset: str = "imagenet2012"
    data_dir: Optional[str] = None
    image_size: Optional[int] = None
    batch_size: int = 256
    eval_batch_size: Optional[int] = None
    train_steps: Optional[int] = None
    train_epochs: Optional[float] = None
    lr_schedule: str = "step"
    base_learning_rate: float = 0.1
    warmup_steps: Optional[int] = None
    warmup_epochs: Optional[float] = None
    lr_decay_steps: Optional[Tuple[int, ...]] = None
    lr_decay_epochs: Optional[Tuple[float, ...]] = None
    lr_decay_factor: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0
    precision: str = "float32"
    reversible: bool = True
    jit_compile: Optional[bool] = None
    steps_per_loop: int = 100
    eval_every: Optional[int] = None
    eval_steps: Optional[int] = None
    checkpoint_every: Optional[int] = None
    keep_checkpoints: int = 3
    summary_images: int = 4
    seed: Optional[int] = None
    deterministic: bool = False

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
