"""Training speed: images/s of the whole training step (forward, backward, SGD update)
through the trainer's compiled loop, on synthetic data.

    python -m benchmarks.train_throughput       # irevnet301 (batch 8), irevnet_cifar (batch 64)
    python -m benchmarks.train_throughput --configs=irevnet_small --batch_sizes=16 --steps=2

For each configuration and each gradient mode (reversible: activations rebuilt from the
outputs; plain: stored), this builds what `irevnet_tf.training.train` builds (strategy,
model, MomentumSGD (momentum, coupled weight decay), ClassificationTask, TrainingLoops over
`build_dataset("synthetic")` distributed per replica), compiles the loop with one
warm-up call, then times `--loops` calls of `--steps` steps each and reports the median.
Checkpoints and evaluation are left out: they are not part of a step.

For a comparison with the authors' PyTorch release on the machine at hand, run
`python -m benchmarks.pytorch_reference` (the same loop beside the release's architecture).
"""

import json
import statistics
import time

from absl import app, flags

from benchmarks import common

FLAGS = flags.FLAGS
common.define_config_flags()
# `--help` lists this script's key flags: also the ones defined in common.
flags.adopt_module_key_flags(common)
flags.DEFINE_list("modes", ["reversible", "plain"], "Gradient modes: reversible and/or plain.")
flags.DEFINE_integer("steps", 5, "Steps per timed loop call.")
flags.DEFINE_integer("loops", 3, "Timed loop calls (the median is reported).")
flags.DEFINE_integer("warmup_steps", 1, "Steps of the first (tracing/compiling) call.")
flags.DEFINE_integer("image_size", None, "Image size (default: the configuration's).")
flags.DEFINE_integer("threads", 2, "Intra-op threads.")
flags.DEFINE_enum("strategy", "default", ["default", "one_device", "mirrored", "tpu"],
                  "Distribution strategy.")
flags.DEFINE_enum("precision", "float32", ["float32", "mixed_bfloat16", "mixed_float16"],
                  "Precision policy.")
flags.DEFINE_bool("jit_compile", None, "XLA (default: on for TPUs only; slower on this CPU).")


def measure(strategy, name, batch_size, reversible):
    import keras

    from irevnet_tf import configs, data
    from irevnet_tf.training import strategies

    keras.mixed_precision.set_global_policy(FLAGS.precision)
    size = FLAGS.image_size or configs.get_config(name)["input_shape"][0]
    jit = FLAGS.jit_compile if FLAGS.jit_compile is not None else strategies.is_tpu(strategy)
    with strategy.scope():
        model = configs.build_irevnet(name, reversible=reversible,
                                      input_shape=(size, size, 3))
        loops = common.trainer_loops(strategy, model, batch_size, 0.1 * batch_size / 256, jit,
                                     loss_scale=FLAGS.precision == "mixed_float16")

    def dataset_fn(input_context):
        dataset = data.build_dataset("synthetic", "train", global_batch_size=batch_size,
                                     image_size=size, is_training=True,
                                     input_context=input_context, seed=0)
        # Synthetic labels cover ImageNet's 1,000 classes; fold them onto the model's.
        return dataset.map(lambda images, labels: (images, labels % model.num_classes))

    iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))
    started = time.perf_counter()
    loops.train(iterator, FLAGS.warmup_steps)
    first_call = time.perf_counter() - started
    samples = []
    for _ in range(FLAGS.loops):
        started = time.perf_counter()
        loops.train(iterator, FLAGS.steps)
        samples.append(time.perf_counter() - started)
    median = statistics.median(samples)
    return {
        "config": name, "batch_size": batch_size, "image_size": size,
        "mode": "reversible" if reversible else "plain", "strategy": FLAGS.strategy,
        "replicas": strategy.num_replicas_in_sync, "precision": FLAGS.precision, "xla": jit,
        "images_per_s": FLAGS.steps * batch_size / median,
        "seconds_per_step": median / FLAGS.steps,
        "loop_samples_s": [round(s, 3) for s in samples],
        "first_call_s": round(first_call, 1),
    }


def main(argv):
    del argv
    pairs = common.config_batch_pairs(FLAGS.configs, FLAGS.batch_sizes)
    common.check_gradient_modes(FLAGS.modes)
    common.configure_threads(FLAGS.threads)
    from irevnet_tf.training import strategies

    strategy = strategies.create_strategy(FLAGS.strategy)
    for name, batch in pairs:
        for mode in FLAGS.modes:
            print(json.dumps({**measure(strategy, name, batch, mode == "reversible"),
                              "machine": common.machine_description()}),
                  flush=True)


if __name__ == "__main__":
    app.run(main)
