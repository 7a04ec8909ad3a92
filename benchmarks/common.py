"""Shared benchmark set-up: thread settings, natural test images, timing statistics."""

import json
import os
import statistics
import time

import numpy as np
from absl import app, flags


def configure_threads(intra_op, inter_op=1):
    """Must run before TensorFlow executes anything (the settings are then frozen)."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(intra_op)
    tf.config.threading.set_inter_op_parallelism_threads(inter_op)


def natural_images(count, size, channels=3, seed=0):
    """`count` crops of natural photographs as float32 pixels in [0, 255].

    Uses the photographs that ship with matplotlib and scikit-learn when installed (random
    crops at random scales), else the embedded digits upsampled; never random noise, whose
    batch statistics are unlike those of images.
    """
    import tensorflow as tf

    sources = []
    for module, relative in (("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
                             ("sklearn", "datasets/images/china.jpg"),
                             ("sklearn", "datasets/images/flower.jpg")):
        try:
            package = __import__(module)
        except ImportError:
            continue
        path = os.path.join(os.path.dirname(package.__file__), relative)
        if os.path.exists(path):
            sources.append(tf.io.decode_jpeg(tf.io.read_file(path), channels=3))
    rng = np.random.default_rng(seed)
    if not sources:
        from irevnet_tf.data.digits import load_digits

        digits, _ = load_digits()
        picks = digits[rng.integers(0, len(digits), count)].astype(np.float32) * (255 / 16)
        images = tf.image.resize(picks[..., None], (size, size))
        return np.repeat(images.numpy(), channels, axis=-1)[..., :channels]
    crops = []
    for index in range(count):
        image = sources[index % len(sources)]
        height, width = int(image.shape[0]), int(image.shape[1])
        side = int(rng.uniform(0.4, 1.0) * min(height, width))
        top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
        crop = tf.image.resize(tf.cast(image[top:top + side, left:left + side], tf.float32),
                               (size, size), antialias=True)
        crops.append(crop.numpy()[..., :channels])
    return np.clip(np.stack(crops), 0, 255).astype(np.float32)


# Normalisation of the natural test images (pixels in [0, 255]).
IMAGE_MEAN, IMAGE_STD = 120.0, 60.0


PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def define_calibration_flag():
    """--calibration_steps, --seed and --precision, the arguments of `calibrated_model`."""
    flags.DEFINE_integer("calibration_steps", 10, "Training-mode passes that set BN statistics.")
    flags.DEFINE_integer("seed", 0, "Seed of the model's random weights.")
    flags.DEFINE_enum("precision", "float32", PRECISIONS,
                      "Dtype policy of the measured model (same weights and statistics in "
                      "each: calibrated in float32, then copied).")


def calibrated_model(name, batch_size, calibration_steps, seed=0, precision="float32"):
    """Configuration `name` with non-trivial batch-norm statistics, and normalised test images.

    A fresh model's batch norms are the identity; `calibration_steps` training-mode passes
    over other natural images give them statistics like a trained model's (momentum 0.9:
    after n passes they are 1 - 0.9^n of the way there). The weights are drawn from `seed`:
    with converged statistics the round trip varies by up to 10x between draws. Returns the
    model (computing under `precision`, with the float32 calibration's weights and
    statistics) and `batch_size` normalised natural images (float32 numpy).
    """
    import keras
    import tensorflow as tf

    import irevnet_tf

    keras.utils.set_random_seed(seed)
    model = irevnet_tf.build_irevnet(name)
    height, _, channels = model.image_shape
    calibration = (natural_images(batch_size, height, channels, seed=1) - IMAGE_MEAN) / IMAGE_STD
    for step in range(calibration_steps):
        model.encode(tf.constant(np.roll(calibration, step, axis=0)), training=True)
    images = (natural_images(batch_size, height, channels) - IMAGE_MEAN) / IMAGE_STD
    return model.with_dtype_policy(precision), images.astype(np.float32)


def time_call(function, repeats, warmup=2):
    """Seconds per call: the median and all samples, after `warmup` calls."""
    for _ in range(warmup):
        np.asarray(function())
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.asarray(function())
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), samples



def define_config_flags(batch_sizes=("8", "64")):
    """--configs and --batch_sizes, the parallel lists the model benchmarks take."""
    flags.DEFINE_list("configs", ["irevnet301", "irevnet_cifar"], "Named configurations.")
    flags.DEFINE_list("batch_sizes", list(batch_sizes),
                      "Batch size per configuration (same order).")


def config_batch_pairs(configs, batch_sizes):
    """`[(config, batch_size)]` from the parallel --configs and --batch_sizes flag lists."""
    if len(batch_sizes) != len(configs):
        raise app.UsageError("--batch_sizes needs one entry per --configs entry.")
    return [(name, int(batch)) for name, batch in zip(configs, batch_sizes)]


def machine_description():
    """The CPU and the instruction sets that decide 16-bit speed, for every recorded result.

    bfloat16 is fast only where the hardware multiplies it (AMX-BF16, AVX512-BF16 on CPUs;
    TPUs; recent GPUs) and TensorFlow's oneDNN kernels are on (TensorFlow turns them on by
    default only on CPUs with such features): elsewhere bfloat16 convolutions are emulated
    and slower than float32, so a bfloat16 speed figure means nothing without this line.
    """
    import platform

    model, features = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    features = set(value.split())
    except OSError:
        pass
    try:
        from tensorflow.python.util import _pywrap_util_port  # Private; no public query.

        onednn = bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        onednn = None
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    return {"cpu": model, "cpu_count": os.cpu_count(),
            "features": [name for name in wanted if name in features], "onednn": onednn}


def print_measurements(measure, configs, batch_sizes, threads):
    """`measure(config, batch_size)` for each --configs/--batch_sizes pair, one JSON line each,
    with `threads` intra-op threads: the main loop of the per-configuration benchmarks.
    Each line records the machine (`machine_description`)."""
    pairs = config_batch_pairs(configs, batch_sizes)
    configure_threads(threads)
    machine = machine_description()
    for name, batch in pairs:
        print(json.dumps({**measure(name, batch), "machine": machine}), flush=True)


def check_gradient_modes(modes):
    """Refuses --modes entries other than reversible and plain."""
    unknown = sorted(set(modes) - {"reversible", "plain"})
    if unknown:
        raise app.UsageError(f"--modes accepts reversible and plain, got {unknown}.")


# The trainer's recipe for the update (paper: momentum 0.9, coupled weight decay 1e-4).
MOMENTUM, L2_DECAY = 0.9, 1e-4


def trainer_loops(strategy, model, batch_size, learning_rate, jit_compile, loss_scale=False):
    """What `irevnet_tf.training.train` builds around a model, for timing its steps.

    The trainer's optimizer (MomentumSGD with MOMENTUM and L2_DECAY; wrapped for
    loss scaling when asked), ClassificationTask and TrainingLoops (replica steps
    compiled with XLA if `jit_compile`; no reconstructions). Call it under
    `strategy.scope()`, where the model was built.
    """
    import keras
    import tensorflow as tf

    from irevnet_tf.training import MomentumSGD, task as task_lib, trainer

    optimizer = MomentumSGD(learning_rate, momentum=MOMENTUM, l2_decay=L2_DECAY)
    if loss_scale:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)
    step = tf.Variable(0, dtype=tf.int64, trainable=False,
                       aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    task = task_lib.ClassificationTask(model, optimizer, global_batch_size=batch_size,
                                       num_classes=model.num_classes)
    return trainer.TrainingLoops(strategy, task, step, jit_compile, reconstruction_count=0)
