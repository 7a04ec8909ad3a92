"""The absl flags of trainers/train_imagenet.py, one per TrainConfig field, with their help.

Defining them here (not in the script) keeps the script thin and lets tests parse a
command line: `define_flags(flag_values)` then `config_from_flags(flag_values)`.
"""

from absl import flags

from irevnet_tf import configs
from irevnet_tf.training import config as config_lib

_DEFAULTS = config_lib.TrainConfig()


def define_flags(flag_values=flags.FLAGS):
    """Defines the training flags on `flag_values` (absl's global FLAGS by default)."""
    fv = dict(flag_values=flag_values)
    d = _DEFAULTS
    # Where and on what.
    flags.DEFINE_string("model_dir", None, "Required. Directory of the run: run_config.json (the "
                        "configuration, written first), checkpoints/, TensorBoard summaries "
                        "(train/, eval/) and model.keras at the end. Rerunning with the same "
                        "directory resumes; a different configuration there is refused. Use "
                        "shared storage (gs://...) for TPUs and multi-machine runs.", **fv)
    flags.DEFINE_enum("strategy", d.strategy, list(config_lib.STRATEGIES),
                      "Distribution: tpu (TPUStrategy on --tpu), mirrored (all local GPUs; all "
                      "logical CPUs without GPUs), multi_worker (several machines, from "
                      "TF_CONFIG), one_device (first GPU, else CPU), default (no distribution).",
                      **fv)
    flags.DEFINE_string("tpu", None, "With --strategy=tpu: the Cloud TPU name, a grpc://host:8470 "
                        "address, or 'local' on a TPU VM (default: $TPU_NAME, else local). "
                        "Fails at once if no TPU is found.", **fv)
    flags.DEFINE_string("config", d.config, "Named i-RevNet configuration; known: "
                        f"{', '.join(configs.config_names())}. irevnet301 is the paper's "
                        "ImageNet model (b).", **fv)
    flags.DEFINE_string("dataset", d.dataset, "Data set: imagenet2012 (tensorflow-datasets, "
                        "prepared under --data_dir), imagenet_tfrecord (train-*/validation-* "
                        "shards in --data_dir), any tensorflow-datasets image set (e.g. "
                        "cifar10), synthetic (random, for speed tests) or digits (embedded, "
                        "for demos). Classes, channels and the default image size come from "
                        "the data set. ImageNet training augmentation is the paper's (random "
                        "resized crop, horizontal flip); the release's colour jitter is left "
                        "out.", **fv)
    flags.DEFINE_string("data_dir", None, "Data directory of --dataset (tfds data_dir or the "
                        "TFRecord shards).", **fv)
    flags.DEFINE_integer("image_size", None, "Training and evaluation image size (default: the "
                         "data set's, 224 for ImageNet). Must be divisible by the model's total "
                         "down-sampling (32 for irevnet301).", **fv)
    # Length and batch.
    flags.DEFINE_integer("batch_size", d.batch_size, "Global batch size over all replicas "
                         "(paper: 256). Must be divisible by the number of replicas.", **fv)
    flags.DEFINE_integer("eval_batch_size", None, "Global evaluation batch (default "
                         "--batch_size). Evaluation drops the last partial batch; a divisor of "
                         "the split size (e.g. 250 or 1000 for ImageNet's 50,000) evaluates "
                         "every image.", **fv)
    flags.DEFINE_integer("train_steps", None, "Training length in optimizer steps. Exclusive "
                         "with --train_epochs; with neither, the paper's 600k steps at batch "
                         "256 (scaled to the same number of images at other batch sizes).",
                         **fv)
    flags.DEFINE_float("train_epochs", None, "Training length in epochs of the training split "
                       "(the release: 128). Exclusive with --train_steps.", **fv)
    # Optimisation.
    flags.DEFINE_enum("lr_schedule", d.lr_schedule, list(config_lib.LR_SCHEDULES),
                      "step: multiply by --lr_decay_factor at each decay boundary (the paper); "
                      "cosine: cosine decay to 0 at the end of training.", **fv)
    flags.DEFINE_float("base_learning_rate", d.base_learning_rate, "Learning rate per 256 "
                       "images, scaled linearly with the global batch (lr = base * batch / 256; "
                       "paper: 0.1 at batch 256).", **fv)
    flags.DEFINE_integer("warmup_steps", None, "Linear warm-up steps (exclusive with "
                         "--warmup_epochs; default none, as in the paper; large batches "
                         "usually need about 5 epochs).", **fv)
    flags.DEFINE_float("warmup_epochs", None, "Linear warm-up in epochs (exclusive with "
                       "--warmup_steps).", **fv)
    flags.DEFINE_list("lr_decay_steps", None, "Step-schedule boundaries in steps, e.g. "
                      "160000,320000,480000. Default: the paper's boundaries (every 160k of "
                      "600k iterations) as the same fractions of the run.", **fv)
    flags.DEFINE_list("lr_decay_epochs", None, "Step-schedule boundaries in epochs, e.g. "
                      "32,64,96 (the release). Exclusive with --lr_decay_steps.", **fv)
    flags.DEFINE_float("lr_decay_factor", d.lr_decay_factor, "Step-schedule multiplier at each "
                       "boundary (paper: 0.1).", **fv)
    flags.DEFINE_float("momentum", d.momentum, "SGD momentum (paper: 0.9).", **fv)
    flags.DEFINE_float("weight_decay", d.weight_decay, "Coupled L2 weight decay on every "
                       "trainable weight, as torch.optim.SGD in the release (grad += wd * w "
                       "before momentum; paper: 1e-4). Not Keras' decoupled weight_decay.",
                       **fv)
    flags.DEFINE_float("label_smoothing", d.label_smoothing, "Label smoothing in [0, 1) "
                       "(paper: 0).", **fv)
    flags.DEFINE_enum("precision", d.precision, list(config_lib.PRECISIONS),
                      "float32; mixed_bfloat16 (TPUs, recent CPUs/GPUs); mixed_float16 (GPUs, "
                      "with dynamic loss scaling). The invertible stream stays float32.", **fv)
    flags.DEFINE_bool("reversible", d.reversible, "Memory-saving gradient: rebuild activations "
                      "from the outputs in the backward pass instead of storing them "
                      "(activation memory independent of depth, about 1.5x compute).", **fv)
    flags.DEFINE_bool("jit_compile", None, "Compile the replica steps with XLA (default: on "
                      "for TPUs, off elsewhere).", **fv)
    # Loop, evaluation, checkpoints.
    flags.DEFINE_integer("steps_per_loop", d.steps_per_loop, "Steps per call of the compiled "
                         "training loop (one progress line each); larger amortises host "
                         "overhead on TPUs.", **fv)
    flags.DEFINE_integer("eval_every", None, "Evaluate every this many steps (default: once "
                         "per epoch; 0: only at the end).", **fv)
    flags.DEFINE_integer("eval_steps", None, "Batches per evaluation (default: the whole "
                         "evaluation split).", **fv)
    flags.DEFINE_integer("checkpoint_every", None, "Save a checkpoint every this many steps "
                         "(default: once per epoch; 0: only at the end and on SIGTERM).", **fv)
    flags.DEFINE_integer("keep_checkpoints", d.keep_checkpoints, "Number of recent checkpoints "
                         "to keep.", **fv)
    flags.DEFINE_integer("summary_images", d.summary_images, "Images shown with their "
                         "decode(encode(x)) reconstruction in TensorBoard at each evaluation "
                         "(0: none).", **fv)
    flags.DEFINE_integer("seed", None, "Seed of weights, data order and dropout (default: "
                         "random; 0 with --deterministic).", **fv)
    flags.DEFINE_bool("deterministic", d.deterministic, "Deterministic ops and input pipeline: "
                      "the same flags give the same weights, also across a restart (which "
                      "replays the input up to the checkpoint). Slower.", **fv)


def config_from_flags(flag_values=flags.FLAGS):
    """The TrainConfig of parsed flags (validated)."""
    names = [field for field in config_lib.TrainConfig.__dataclass_fields__]
    return config_lib.TrainConfig(**{name: flag_values[name].value for name in names}).validate()
