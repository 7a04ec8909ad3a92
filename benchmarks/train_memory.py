r"""Activation memory and speed of a training step: reversible (memory-saving) vs plain gradient.

Each measurement runs in its own subprocess (a fresh heap and allocator pool). For every
blocks multiplier and gradient kind it builds the model and the trainer's MomentumSGD optimizer
(slots created), traces the training step that ships (`--path=loop`: the trainer's,
`ClassificationTask.train_step` through `TrainingLoops`), runs it (`--warmup`), times
`--repeats` steps and then records the peak RSS of `--memory_repeats` more. It reports
(irevnet_tf/benchmarking/train_step.py has the details):

- with --path=fit the step is Keras' own `train_step` after `model.compile(optimizer=
  MomentumSGD(...), loss=...)`, run as `model.fit` runs it (under the model's
  `distribute_strategy.run` in a `tf.function`; `shipped_steps.keras_train_step_function`);
  its optimizer slots are built and its step function traced before the baseline too.
  "(model)" figures start from the RSS with the model alone, as a measurement from before
  the first `fit` does: they add the momentum slots and the traced graph.
- act. RSS: peak RSS over those steps - RSS with model, optimizer and traced step - one
  float32 copy of the parameters (the gradients); "(built)": the same from the RSS
  before tracing, which adds the traced graph's Python objects (about 0.3 GiB for
  irevnet301). Peak RSS is the kernel's VmHWM, reset through /proc/self/clear_refs
  (exact, free while running; a sampling thread where the file cannot be written). With
  oneDNN, TensorFlow's CPU allocator pools large blocks and never returns them, so the
  RSS right before a warm step already holds the previous step's peak; that is why the
  baseline is taken before the first run. It also includes what the first run keeps
  for good (graph kernels, allocator slack).
- act. tensors: a second process with TF_CPU_ALLOCATOR_USE_BFC=true (TensorFlow's own
  BFC allocator, which keeps statistics) measures the peak of live tensor bytes during a
  step over those alive before it, minus the gradients: exact, tensors only.
- step RSS / step tensors: the same two peaks without subtracting the gradients (the
  step's whole increase). MomentumSGD updates each variable as soon as its gradient exists,
  so a reversible step may never hold all gradients at once; the act. figures are then
  negative and the ratios use the step figures.
- with --jit_compile, also XLA's own total for the compiled step (arguments, outputs and
  temporaries, from its buffer-assignment dump): exact, but it includes the parameters
  and the optimizer's temporaries.
- step time (median) and images/s, with oneDNN on and `--intra_op_threads` threads.

Examples:
    # The report's setting (quiet machine; the plain x2 run needs the most RAM):
    python benchmarks/train_memory.py --config=irevnet301 --batch_size=8
    # A quick check that it works:
    python benchmarks/train_memory.py --config=irevnet301 --image_size=64 \
        --blocks_multiplier=1 --repeats=2
    # Keras' own train_step (as model.fit runs it) against the trainer's step, from the
    # same milestones (docs/memory_saving.md):
    python benchmarks/train_memory.py --config=irevnet_cifar --batch_size=8 --path=loop,fit
    # Attribution: gradients without the optimizer update; XLA:
    python benchmarks/train_memory.py --step=gradients
    python benchmarks/train_memory.py --jit_compile
"""

import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile

from absl import app, flags, logging

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

FLAGS = flags.FLAGS
flags.DEFINE_string("config", "irevnet301", "Named configuration (irevnet_tf.config_names()).")
flags.DEFINE_integer("image_size", 0, "Image height and width; 0: the configuration's.")
flags.DEFINE_integer("batch_size", 8, "Images per step.")
flags.DEFINE_list("blocks_multiplier", ["1", "2"],
                  "Blocks-per-stage multipliers to measure (2: every stage twice as deep).")
flags.DEFINE_enum("reversible", "both", ["both", "on", "off"],
                  "Gradient kinds to measure: reversible (on), plain autodiff (off) or both.")
flags.DEFINE_list("path", ["loop"],
                  "Training paths to measure: loop (the trainer's step: ClassificationTask."
                  "train_step through TrainingLoops) and/or fit (model.compile(optimizer="
                  "MomentumSGD(...), loss=...), then Keras' own train_step as model.fit runs "
                  "it).")
flags.DEFINE_enum("step", "train", ["train", "gradients", "forward"],
                  "What a step does: the full update, gradients only, or forward and loss.")
flags.DEFINE_integer("warmup", 2, "Untimed steps first (the first one traces).")
flags.DEFINE_integer("repeats", 5, "Timed steps; the median is reported.")
flags.DEFINE_integer("memory_repeats", 2, "Steps whose peak memory is measured (median).")
flags.DEFINE_bool("jit_compile", False, "Compile the train step with XLA.")
flags.DEFINE_integer("intra_op_threads", 2, "TensorFlow intra-op threads (also OMP threads).")
flags.DEFINE_integer("inter_op_threads", 2, "TensorFlow inter-op threads.")
flags.DEFINE_enum("memory_method", "hwm", ["hwm", "sample"],
                  "Peak RSS from the kernel's high-water mark or from a sampling thread.")
flags.DEFINE_bool("tf_allocator_stats", True,
                  "Also run each case in a second process with TensorFlow's BFC CPU allocator "
                  "(TF_CPU_ALLOCATOR_USE_BFC=true), which counts live tensor bytes, and report "
                  "its activation memory too (exact, tensors only; not with --jit_compile).")
flags.DEFINE_string("output", "", "Write all results as JSON to this file.")
flags.DEFINE_bool("single", False, "Internal: run one measurement here and print it as JSON.")

_RESULT_PREFIX = "TRAIN_MEMORY_RESULT "
_GIB = 1024.0 ** 3


def _run_single():
    import tensorflow as tf  # After the environment is set up by the parent.

    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.intra_op_threads)
    tf.config.threading.set_inter_op_parallelism_threads(FLAGS.inter_op_threads)
    from irevnet_tf.benchmarking import train_step

    if len(FLAGS.blocks_multiplier) != 1 or FLAGS.reversible == "both" or len(FLAGS.path) != 1:
        raise app.UsageError("--single needs one --blocks_multiplier, one --path and "
                             "--reversible=on/off.")
    result = train_step.measure_training_step(
        config_name=FLAGS.config, image_size=FLAGS.image_size or None,
        batch_size=FLAGS.batch_size, blocks_multiplier=int(FLAGS.blocks_multiplier[0]),
        reversible=FLAGS.reversible == "on", step=FLAGS.step, jit_compile=FLAGS.jit_compile,
        warmup=FLAGS.warmup, repeats=FLAGS.repeats, memory_repeats=FLAGS.memory_repeats,
        memory_method=FLAGS.memory_method, path=FLAGS.path[0])
    result.update(intra_op_threads=FLAGS.intra_op_threads,
                  inter_op_threads=FLAGS.inter_op_threads)
    print(_RESULT_PREFIX + json.dumps(result), flush=True)


def _child(multiplier, reversible, allocator_stats, path="loop"):
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="1", TF_CPP_MIN_LOG_LEVEL="2",
               OMP_NUM_THREADS=str(FLAGS.intra_op_threads),
               PYTHONPATH=os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH"))
                                          if p))
    if allocator_stats:
        env["TF_CPU_ALLOCATOR_USE_BFC"] = "true"
    dump_dir = None
    if FLAGS.jit_compile and not allocator_stats:
        # XLA reserves one block for all temporaries; its dump says how large.
        dump_dir = tempfile.mkdtemp(prefix="train_memory_xla_")
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_dump_to={dump_dir}".strip()
    command = [sys.executable, os.path.abspath(__file__), "--single",
               f"--blocks_multiplier={multiplier}", f"--reversible={reversible}", f"--path={path}"]
    for name in ("config", "image_size", "batch_size", "step", "warmup", "repeats",
                 "memory_repeats", "jit_compile", "intra_op_threads", "inter_op_threads",
                 "memory_method"):
        command.append(f"--{name}={FLAGS[name].value}")
    logging.info("Running %s", " ".join(command[2:]))
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    xla_bytes = None
    if dump_dir:
        from irevnet_tf.benchmarking import train_step

        xla_bytes = train_step.xla_buffer_bytes(dump_dir)
        shutil.rmtree(dump_dir, ignore_errors=True)
    for line in completed.stdout.splitlines():
        if line.startswith(_RESULT_PREFIX):
            result = json.loads(line[len(_RESULT_PREFIX):])
            if xla_bytes is not None:
                result["xla_buffer_bytes"] = xla_bytes
            return result
    raise RuntimeError(f"Measurement {' '.join(command[2:])} failed (exit code "
                       f"{completed.returncode}):\n{completed.stderr[-4000:]}")


def _gib(value):
    return "" if value is None else f"{value / _GIB:.3f}"


def _report(results):
    lines = [f"{'path':>4} {'blocks':>16} {'gradient':>10} {'act. RSS':>9} {'(built)':>8} "
             f"{'(model)':>8} {'act. tensors':>12} "
             f"{'step RSS':>8} {'step tensors':>12} {'grads':>6} {'built':>6} {'traced':>6} "
             f"{'1st peak':>8} {'peak':>6} {'step s':>7} {'img/s':>6}   (memory in GiB)"]
    for r in results:
        lines.append(
            f"{r.get('path', 'loop'):>4} {str(tuple(r['blocks'])):>16} "
            f"{'reversible' if r['reversible'] else 'plain':>10} "
            f"{_gib(r['activation_bytes']):>9} {_gib(r['activation_from_built_bytes']):>8} "
            f"{_gib(r.get('activation_from_model_bytes')):>8} "
            f"{_gib(r.get('tf_allocator_activation_bytes')):>12} "
            f"{_gib(r['step_increase_bytes']):>8} "
            f"{_gib(r.get('tf_allocator_peak_increase_bytes')):>12} "
            f"{_gib(r['gradient_bytes']):>6} {_gib(r['rss_model_built_bytes']):>6} "
            f"{_gib(r['rss_traced_bytes']):>6} {_gib(r['first_step_peak_bytes']):>8} "
            f"{_gib(r['steady_peak_bytes']):>6} {r['median_step_seconds']:7.3f} "
            f"{r['images_per_second']:6.2f}"
            + (f"  XLA buffers {_gib(r['xla_buffer_bytes'])}" if "xla_buffer_bytes" in r else ""))
    lines.append(
        "act.: the issue's activation memory (step's peak - baseline - one gradient copy); "
        "negative when the step never holds all gradients at once. step: peak - baseline, "
        "gradients included.")
    lines.append(
        "(built): from the RSS before tracing; (model): from the RSS with the model alone "
        "(adds the optimizer's momentum slots and the traced graph, as a baseline taken "
        "before the first fit does).")
    by_case = {(r.get("path", "loop"), r["blocks_multiplier"], r["reversible"]): r
               for r in results}
    measures = (("act. RSS", "activation_bytes"), ("act. RSS (model)", "activation_from_model_bytes"),
                ("act. tensors", "tf_allocator_activation_bytes"),
                ("step RSS", "step_increase_bytes"),
                ("step tensors", "tf_allocator_peak_increase_bytes"),
                ("XLA buffers in all", "xla_buffer_bytes"))

    def ratio(numerator, denominator, key):
        # A ratio of a negative figure (less than one gradient copy) means nothing.
        if numerator.get(key) is None or denominator.get(key) is None \
                or numerator[key] <= 0 or denominator[key] <= 0:
            return None
        return numerator[key] / denominator[key]

    def ratios(numerator, denominator, percent):
        return ", ".join(
            f"{name} {ratio(numerator, denominator, key):{'.1%' if percent else '.2f'}}"
            for name, key in measures if ratio(numerator, denominator, key) is not None)

    for path, multiplier in sorted({(r.get("path", "loop"), r["blocks_multiplier"])
                                    for r in results}):
        rev, plain = by_case.get((path, multiplier, True)), by_case.get((path, multiplier, False))
        if rev and plain:
            lines.append(
                f"{path}, x{multiplier} blocks: reversible activations / plain: "
                f"{ratios(rev, plain, True)} (target <= 20%); step time "
                f"{rev['median_step_seconds'] / plain['median_step_seconds']:.2f}x plain "
                f"(target <= 1.3x)")
    for path, reversible in sorted({(r.get("path", "loop"), r["reversible"]) for r in results}):
        one, two = by_case.get((path, 1, reversible)), by_case.get((path, 2, reversible))
        if one and two:
            added = two["parameter_bytes"] - one["parameter_bytes"]
            growth = ", ".join(
                f"{name} {(two[key] - one[key]) / added:+.2f}" for name, key in measures
                if two.get(key) is not None and one.get(key) is not None)
            lines.append(
                f"{path}, {'reversible' if reversible else 'plain'} growth x1 -> x2 blocks, "
                f"in copies of the added parameters: {growth}")
            lines.append(
                f"{path}, {'reversible' if reversible else 'plain'} activations, x2 blocks / x1: "
                f"{ratios(two, one, False)} (target: reversible <= 1.10, plain about 2)")
    return "\n".join(lines)


def _write_json_atomically(path, payload):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".train_memory_", suffix=".json")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(payload, file, indent=2)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if FLAGS.single:
        _run_single()
        return
    multipliers = [int(m) for m in FLAGS.blocks_multiplier]
    kinds = {"both": ["on", "off"], "on": ["on"], "off": ["off"]}[FLAGS.reversible]
    results = []
    for path in FLAGS.path:
        for multiplier, kind in itertools.product(multipliers, kinds):
            result = _child(multiplier, kind, allocator_stats=False, path=path)
            # Under XLA the allocator sees one block of temporaries, rounded up by up to
            # 2x; XLA's own buffer total replaces it.
            if FLAGS.tf_allocator_stats and not FLAGS.jit_compile:
                bfc = _child(multiplier, kind, allocator_stats=True, path=path)
                for key in ("tf_allocator_peak_increase_bytes",
                            "tf_allocator_activation_bytes"):
                    result[key] = bfc.get(key)
            logging.info("Result: %s", json.dumps(result))
            results.append(result)
    report = _report(results)
    print(report)
    if FLAGS.output:
        _write_json_atomically(FLAGS.output, {"results": results, "report": report})


if __name__ == "__main__":
    app.run(main)
