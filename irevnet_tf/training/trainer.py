"""The distributed training loop of i-RevNet: `train(config)` and the `Trainer` behind it.

One code path for every strategy (default, one device, mirrored GPUs, multi-worker, TPU):
- data: `strategy.distribute_datasets_from_function`, each input pipeline sharded and
  batched per replica by `irevnet_tf.data.build_dataset`;
- loop: a `tf.function` that runs `steps_per_loop` steps in a `tf.range` loop, each a
  `strategy.run` of the replica step (`ClassificationTask.train_step`, XLA-compiled with
  `jit_compile`), as TPUs need (one host round trip per loop, not per step);
- state: `tf.train.Checkpoint(model, optimizer, step)` every `checkpoint_every` steps, on
  SIGTERM and at the end; a restarted run with the same model_dir resumes by itself;
- the model directory records the RunConfig first, so export and analysis need nothing
  else, and a different configuration in the same directory is refused;
- a NaN/Inf loss stops the run before anything is saved.

Resuming the input pipeline: TensorFlow's distributed iterators cannot be checkpointed
(`tf.train.Checkpoint` rejects them), so a resumed --deterministic run replays the
pipeline up to the checkpointed step (`Dataset.skip`: exact, cheap on small data, costly
on ImageNet), and any other resumed run reseeds its shuffling with the step, so that it
does not see the first examples again.

Batch-norm moving statistics: each replica updates its own copy from its own batch, as
in the release's DataParallel; after every loop the copies are averaged across replicas
so that evaluation and checkpoints use one consistent value. Because the moving averages
are linear in the batch statistics, this equals averaging the replicas' statistics at
every step.
"""

import contextlib
import dataclasses
import hashlib
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from irevnet_tf import configs
from irevnet_tf import progress_log
from irevnet_tf import data as data_lib
from irevnet_tf import files
from irevnet_tf import model_files
from irevnet_tf.data import pipeline as data_pipeline
from irevnet_tf.training import checkpointing
from irevnet_tf.training import config as config_lib
from irevnet_tf.training import model_dir as model_dir_lib
from irevnet_tf.training import optimizer as optimizer_lib
from irevnet_tf.training import plan as plan_lib
from irevnet_tf.training import progress as progress_lib
from irevnet_tf.training import schedules
from irevnet_tf.training import strategies
from irevnet_tf.training import task as task_lib
from irevnet_tf.training.errors import (CheckpointMismatchError, FlagError,
                                        NonFiniteLossError, UnreadableCheckpointError)

KERAS_MODEL_FILE = "model.keras"
# Flags besides the model fields that a resumed run must keep: they change the
# checkpoint's structure (a loss-scale optimizer under mixed_float16).
_FIXED_FLAGS = ("precision",)


def train(train_config=None, *, dataset_builder=None, dataset_info=None, **options):
    """Trains as `trainers/train_imagenet.py` does; returns a dict of results.

    Args:
        train_config: a TrainConfig; or give its fields as keyword `options`
            (`train(model_dir=..., config="irevnet_small", dataset="digits", ...)`);
            options given with a TrainConfig override its fields.
        dataset_builder: a function with the signature of `irevnet_tf.data.build_dataset`
            (default: that function).
        dataset_info: the DatasetInfo to use (default: `irevnet_tf.data.dataset_info`).

    Returns:
        A dict: `step`, `total_steps`, `train_loss`, `train_accuracy`, `eval_loss`,
        `eval_top1`, `eval_top5`, `eval_examples`, `model_dir`, `checkpoint`,
        `keras_model`, `run_config`, `seconds`, `images_per_second`, `weights_digest`,
        `preempted`.
    """
    if train_config is None:
        train_config = config_lib.TrainConfig.from_dict(options)
    elif options:
        train_config = dataclasses.replace(train_config, **options)
    return Trainer(train_config, dataset_builder=dataset_builder, dataset_info=dataset_info).run()


@contextlib.contextmanager
def _global_settings(config):
    """Precision policy, op determinism and seeds for the run; restored afterwards."""
    from tensorflow.python.framework import config as tf_config  # For disable_op_determinism.

    previous_policy = keras.mixed_precision.global_policy()
    was_deterministic = getattr(tf_config, "is_op_determinism_enabled", lambda: False)()
    keras.mixed_precision.set_global_policy(config.precision)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    if config.effective_seed is not None:
        keras.utils.set_random_seed(config.effective_seed)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
        if (config.deterministic and not was_deterministic
                and hasattr(tf_config, "disable_op_determinism")):
            tf_config.disable_op_determinism()


def trainable_parameters(model):
    """Trainable parameters, as the README counts them (batch-norm statistics excluded)."""
    return int(sum(np.prod(variable.shape) for variable in model.trainable_variables))


def describe_parameters(model, config_name):
    """"6,782,696 trainable parameters, 1000 classes (irevnet_cifar has 10)": the count README
    and `summary()`'s "Trainable params" give, and the class count when the data set's
    differs from the configuration's (the classifier's size changes the count)."""
    text = f"{trainable_parameters(model):,} trainable parameters"
    default_classes = configs.get_config(config_name).get("num_classes")
    if getattr(model, "include_top", True) and model.num_classes != default_classes:
        text += f", {model.num_classes} classes ({config_name} has {default_classes})"
    return text


def weights_digest(model):
    """SHA-256 of the model's weights (values and order): equal digests, equal weights."""
    digest = hashlib.sha256()
    for value in model.get_weights():
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


class Trainer:
    """Builds the strategy, data, model, optimizer and checkpoints of a run and runs it.

    Args:
        config: a TrainConfig (validated here).
        dataset_builder, dataset_info: see `train`.
    """

    def __init__(self, config, dataset_builder=None, dataset_info=None):
        self.config = config.validate()
        self._dataset_builder = dataset_builder
        self._dataset_info = dataset_info

    # --- set-up -----------------------------------------------------------------------------

    def _data_functions(self):
        builder, info = self._dataset_builder, self._dataset_info
        if builder is None:
            builder = data_lib.build_dataset
            if self.config.dataset in data_pipeline.NEEDS_DATA_DIR and not self.config.data_dir:
                raise FlagError(
                    f"--data_dir is required for --dataset={self.config.dataset}: the directory "
                    "(local or gs://) of the "
                    + ("train-*/validation-* TFRecord shards."
                       if self.config.dataset == "imagenet_tfrecord"
                       else "prepared tensorflow-datasets data."))
        if info is None:
            try:
                info = data_lib.dataset_info(self.config.dataset, data_dir=self.config.data_dir)
            except (ValueError, KeyError, FileNotFoundError) as error:
                raise FlagError(f"--dataset={self.config.dataset!r}: {error}") from None
        return builder, info

    def _run_config(self, info, plan):
        config = self.config
        base = configs.get_config(config.config)
        overrides = {}
        if info.num_classes != base["num_classes"]:
            overrides["num_classes"] = int(info.num_classes)
        input_shape = [plan.image_size, plan.image_size, int(info.channels)]
        if input_shape != list(base["input_shape"]):
            overrides["input_shape"] = input_shape
        if not config.reversible:
            overrides["reversible"] = False
        return model_files.RunConfig(
            config_name=config.config, overrides=overrides, dataset=config.dataset,
            image_size=plan.image_size, num_classes=int(info.num_classes),
            mean=tuple(float(v) for v in info.mean), std=tuple(float(v) for v in info.std),
            extra={
                "flags": config.to_dict(),
                "plan": plan.to_dict(),
                "data": {"train_split": info.train_split, "eval_split": info.eval_split,
                         "channels": int(info.channels),
                         "num_train_examples": int(info.num_train_examples),
                         "num_eval_examples": int(info.num_eval_examples),
                         "preprocessing": _jsonable(getattr(info, "preprocessing", None))},
            })

    def _build_optimizer(self, plan):
        schedule = schedules.build_schedule(self.config.lr_schedule, plan,
                                            decay_factor=self.config.lr_decay_factor)
        # Keras' velocity convention `v = m*v - lr*g; w += v`; PyTorch's `b = m*b + g;
        # w -= lr*b` is the same update while the rate is constant (they differ only in how
        # the velocity carries over a rate change at a decay boundary).
        optimizer = optimizer_lib.MomentumSGD(learning_rate=schedule,
                                              momentum=self.config.momentum,
                                              l2_decay=self.config.weight_decay)
        if self.config.precision == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        return optimizer, schedule

    # --- the run ----------------------------------------------------------------------------

    def run(self):
        config = self.config
        # Multi-worker strategies must exist before TensorFlow runs anything.
        strategy = strategies.create_strategy(config.strategy, config.tpu)
        with _global_settings(config), strategies.lost_workers_named(strategy, self._last_good):
            session = self._set_up(strategy)
            with checkpointing.PreemptionWatcher() as preemption:
                preempted = self._train(session, preemption)
            return self._finish(session, preempted)

    def _last_good(self):
        """The newest checkpoint (for the lost-worker message), or None. Not read through:
        the message must come at once, and the rerun checks what it restores anyway."""
        try:
            return tf.train.latest_checkpoint(model_files.checkpoint_dir(self.config.model_dir))
        except files.WRITE_ERRORS:
            return None

    def _set_up(self, strategy):
        """Data, plan, run configuration, model, optimizer, checkpoint and loops."""
        config = self.config
        builder, info = self._data_functions()
        replicas = strategy.num_replicas_in_sync
        plan = plan_lib.make_plan(config, info, num_replicas=replicas)
        run_config = self._run_config(info, plan)
        chief = strategies.is_chief(strategy)
        try:
            model_dir_lib.check_same_run(config.model_dir, run_config, extra_keys=_FIXED_FLAGS)
        except ValueError as error:
            raise CheckpointMismatchError(str(error)) from None
        if chief:
            tf.io.gfile.makedirs(config.model_dir)
            run_config.save(model_files.run_config_path(config.model_dir))
        seed = config.effective_seed
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0] % (2**31 - 1))

        with strategy.scope():
            model = run_config.build_model()
            optimizer, schedule = self._build_optimizer(plan)
            optimizer.build(model.trainable_variables)
            step_variable = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step",
                                        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step_variable)
        keeper = checkpointing.CheckpointKeeper(checkpoint, config.model_dir,
                                                config.keep_checkpoints, strategy)
        try:
            restored = keeper.restore_latest()
        except UnreadableCheckpointError as error:
            raise UnreadableCheckpointError(
                f"{error} (--model_dir={config.model_dir})") from None
        start_step = int(step_variable.numpy())
        self._log_start(model, info, plan, replicas, restored, start_step)

        task = task_lib.ClassificationTask(
            model, optimizer, global_batch_size=plan.global_batch_size,
            num_classes=info.num_classes, label_smoothing=config.label_smoothing,
            dropout_seed=seed)
        images_in_summary = min(config.summary_images, plan.eval_batch_size // replicas)
        return _Session(
            strategy=strategy, info=info, plan=plan, run_config=run_config, chief=chief,
            model=model, schedule=schedule, keeper=keeper, restored=restored,
            start_step=start_step, images_in_summary=images_in_summary,
            loops=TrainingLoops(strategy, task, step_variable, config.use_jit(),
                                images_in_summary),
            train_iterator=iter(strategy.distribute_datasets_from_function(
                self._train_dataset_fn(builder, info, plan, seed, start_step))),
            eval_dataset=strategy.distribute_datasets_from_function(
                self._eval_dataset_fn(builder, info, plan, seed)),
            reporter=progress_lib.ProgressReporter(
                config.model_dir, plan.total_steps, write_summaries=chief))

    def _log_start(self, model, info, plan, replicas, restored, start_step):
        config = self.config
        epochs = (f"{plan.total_steps / plan.steps_per_epoch:.2f}" if plan.steps_per_epoch
                  else "?")
        logging.info(
            "i-RevNet %s (%s) on %s at %dx%d: %d replica(s), global batch %d, "
            "%d steps (%s epochs of %s), %s schedule peak lr %.4g, warm-up %d, decay at %s, "
            "precision %s, reversible %s, XLA %s", config.config,
            describe_parameters(model, config.config),
            config.dataset, plan.image_size, plan.image_size, replicas, plan.global_batch_size,
            plan.total_steps, epochs,
            info.train_split, config.lr_schedule, plan.peak_learning_rate, plan.warmup_steps,
            list(plan.decay_boundaries), config.precision, config.reversible, config.use_jit())
        if restored:
            logging.info("Resuming from %s at step %d.", restored, start_step)
        evaluated = plan.eval_steps * plan.eval_batch_size
        if info.num_eval_examples and evaluated < info.num_eval_examples:
            logging.warning(
                "Each evaluation covers %d of the %d examples of %r (batches are complete; "
                "an --eval_batch_size that divides %d covers them all).", evaluated,
                info.num_eval_examples, info.eval_split, info.num_eval_examples)

    def _evaluate(self, session, step):
        """Evaluation metrics (and reconstruction summaries) at `step`."""
        loops, reporter, split = session.loops, session.reporter, session.info.eval_split
        plan = session.plan
        # In chunks of --steps_per_loop batches, each a call of the same compiled loop, so
        # that a long evaluation reports progress as training does.
        chunk = max(1, min(self.config.steps_per_loop, plan.eval_steps))
        progress = progress_log.WorkProgress(
            f"evaluation at step {step}", plan.eval_steps * plan.eval_batch_size,
            min_interval=0.0 if plan.eval_steps > chunk else float("inf"))
        sums, done = None, 0
        with _described_input_errors(self.config, split):
            iterator = iter(session.eval_dataset)
            while done < plan.eval_steps:
                batches = min(chunk, plan.eval_steps - done)
                part = loops.evaluate(iterator, batches)
                sums = part if sums is None else sums + part
                done += batches
                if done < plan.eval_steps:  # The last line is the evaluation's own.
                    progress.update(done * plan.eval_batch_size)
        with self._writing_summaries(session, "eval"):
            metrics = reporter.evaluation(step, sums)
        if session.images_in_summary:
            with _described_input_errors(self.config, split):
                originals, rebuilt = loops.reconstruct(iter(session.eval_dataset))
            with self._writing_summaries(session, "eval"):
                metrics["reconstruction_max_error_pixels"] = reporter.reconstructions(
                    step, originals, rebuilt)
        with self._writing_summaries(session, "eval"):
            reporter.flush()
        session.eval_metrics, session.evaluated_step = metrics, step
        return metrics

    @contextlib.contextmanager
    def _writing_summaries(self, session, subdirectory):
        """Turns a failed summary write (disk full) into a WriteError naming the directory."""
        try:
            yield
        except files.WRITE_ERRORS as error:
            last = session.keeper.latest()
            raise files.write_error(
                "TensorBoard summaries", os.path.join(self.config.model_dir, subdirectory),
                error, advice=(f"The last good checkpoint is "
                               f"{last or 'none (none was written yet)'}; free space and run "
                               f"the same command again to resume from it.")) from None

    def _save(self, session, step):
        session.checkpoint_path, session.saved_step = session.keeper.save(step), step

    def _train(self, session, preemption):
        """Runs loops until the end or a preemption (returns True then)."""
        config, plan, loops = self.config, session.plan, session.loops
        session.checkpoint_path = session.restored
        session.saved_step = session.start_step if session.restored else None
        step = session.step = session.start_step
        stopwatch = progress_lib.Stopwatch()
        while step < plan.total_steps:
            steps = min(config.steps_per_loop, plan.total_steps - step,
                        _until_next(step, plan.eval_every),
                        _until_next(step, plan.checkpoint_every))
            stopwatch.lap()
            with _described_input_errors(config, session.info.train_split):
                sums = loops.train(session.train_iterator, steps)
            seconds = stopwatch.lap()
            step = session.step = step + steps
            if not np.all(np.isfinite(sums)):
                last = session.keeper.latest()
                raise NonFiniteLossError(
                    f"The training loss became {sums[0] / max(sums[2], 1):.4g} (NaN or Inf) "
                    f"within steps {step - steps + 1}-{step}; training stopped without saving. "
                    f"The last good checkpoint is "
                    f"{last or 'none (no checkpoint was written yet)'}. Lower "
                    f"--base_learning_rate, add --warmup_epochs, or use --precision=float32.")
            loops.sync_batch_norm_statistics()
            with self._writing_summaries(session, "train"):
                session.reporter.train_loop(step, steps, sums, session.schedule(step - 1),
                                            seconds)
            if loops.any_worker(preemption.requested):
                self._save(session, step)
                logging.warning("Preempted: saved %s at step %d; rerun the same command to "
                                "resume.", session.checkpoint_path, step)
                return True
            if step < plan.total_steps:
                if plan.eval_every and step % plan.eval_every == 0:
                    self._evaluate(session, step)
                if plan.checkpoint_every and step % plan.checkpoint_every == 0:
                    self._save(session, step)
        return False

    def _finish(self, session, preempted):
        """Final evaluation, checkpoint and model.keras; the result dict."""
        step, keras_model = session.step, None
        if not preempted:
            if session.evaluated_step != step:
                self._evaluate(session, step)
            if session.saved_step != step:
                self._save(session, step)
            if session.chief:
                try:
                    keras_model = self._write_keras_model(session.model, session.run_config)
                except files.WriteError as error:
                    raise error.with_advice(
                        f"Training finished and its last checkpoint {session.checkpoint_path} "
                        f"is saved; free space and run the same command again to write "
                        f"{KERAS_MODEL_FILE} from it.") from None
        with self._writing_summaries(session, "train"):
            session.reporter.flush()
        train, evaluation = session.reporter.last_train, session.eval_metrics
        result = {
            "model_dir": self.config.model_dir, "step": step,
            "total_steps": session.plan.total_steps, "preempted": preempted,
            "train_loss": train.get("loss"), "train_accuracy": train.get("accuracy"),
            "eval_loss": evaluation.get("loss"), "eval_top1": evaluation.get("top1_accuracy"),
            "eval_top5": evaluation.get("top5_accuracy"),
            "eval_examples": evaluation.get("examples"),
            "reconstruction_max_error_pixels": evaluation.get(
                "reconstruction_max_error_pixels"),
            "run_config": model_files.run_config_path(self.config.model_dir),
            "checkpoint": session.checkpoint_path, "keras_model": keras_model,
            "seconds": session.reporter.total_seconds,
            "images_per_second": session.reporter.steady_images_per_second,
            "weights_digest": weights_digest(session.model),
        }
        logging.info("Finished at step %d/%d; weights digest %s", step,
                     session.plan.total_steps, result["weights_digest"])
        return result

    def _train_dataset_fn(self, builder, info, plan, seed, start_step):
        config = self.config
        # See the module docstring: replay for deterministic runs, reseed otherwise.
        data_seed = seed if (config.deterministic or not start_step) else seed + start_step

        def dataset_fn(input_context):
            dataset = builder(
                config.dataset, info.train_split, global_batch_size=plan.global_batch_size,
                image_size=plan.image_size, is_training=True, data_dir=config.data_dir,
                input_context=input_context, seed=data_seed,
                deterministic=config.deterministic, repeat=True)
            if config.deterministic and start_step:
                batches_per_step = (input_context.num_replicas_in_sync
                                    // input_context.num_input_pipelines)
                dataset = dataset.skip(start_step * batches_per_step)
            return dataset

        return dataset_fn

    def _eval_dataset_fn(self, builder, info, plan, seed):
        config = self.config

        def dataset_fn(input_context):
            # Repeated so that every worker runs the same number of steps (no end-of-data
            # race between workers); `eval_steps` bounds each evaluation.
            return builder(
                config.dataset, info.eval_split, global_batch_size=plan.eval_batch_size,
                image_size=plan.image_size, is_training=False, data_dir=config.data_dir,
                input_context=input_context, seed=seed, deterministic=config.deterministic,
                repeat=True)

        return dataset_fn

    def _write_keras_model(self, model, run_config):
        """`<model_dir>/model.keras`: a float32 copy of the trained model outside the strategy."""
        path = os.path.join(self.config.model_dir, KERAS_MODEL_FILE)
        previous_policy = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy("float32")
        try:
            plain = run_config.build_model()
        finally:
            keras.mixed_precision.set_global_policy(previous_policy)
        plain.set_weights(model.get_weights())
        model_files.save_keras_model(plain, run_config, path, what=KERAS_MODEL_FILE)
        logging.info("Wrote %s", path)
        return path


@contextlib.contextmanager
def _described_input_errors(config, split):
    """Turns tf.data's bare errors about bad input (corrupt records, undecodable images,
    labels out of range) into `irevnet_tf.data.InputDataError`s naming the data and files."""
    try:
        yield
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as error:
        if data_lib.classify_input_error(error) == "other":
            raise
        raise data_lib.describe_input_error(error, config.dataset, config.data_dir,
                                            split) from error


@dataclasses.dataclass
class _Session:
    """The objects of one run, shared by the set-up, the loop and the finish."""

    strategy: object
    info: object
    plan: object
    run_config: object
    chief: bool
    model: object
    schedule: object
    keeper: object
    restored: object
    start_step: int
    images_in_summary: int
    loops: object
    train_iterator: object
    eval_dataset: object
    reporter: object
    step: int = 0
    checkpoint_path: object = None
    saved_step: object = None
    eval_metrics: dict = dataclasses.field(default_factory=dict)
    evaluated_step: object = None


def _until_next(step, every):
    if not every:
        return np.iinfo(np.int64).max
    return every - step % every


def _jsonable(value):
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


class TrainingLoops:
    """The compiled loops of a run: training, evaluation, reconstruction, and the syncs.

    Args:
        strategy: the tf.distribute strategy the model and optimizer were built under.
        task: the ClassificationTask (model, optimizer, loss).
        step_variable: int64 variable counting optimizer steps (incremented per step).
        jit_compile: compile the replica steps with XLA.
        reconstruction_count: images per `reconstruct` call.
    """

    def __init__(self, strategy, task, step_variable, jit_compile, reconstruction_count):
        self.strategy = strategy
        self.reconstruction_count = reconstruction_count
        self.task = task
        self.step_variable = step_variable
        self._compute_gradients = task.compute_gradients
        self._eval_step = task.eval_step
        # On TPUs the whole loop is one XLA program already; elsewhere the forward/backward
        # pass and the evaluation step are compiled on their own, while the update (with its
        # cross-replica all-reduce) stays outside XLA, which mirrored strategies need.
        if jit_compile and not strategies.is_tpu(strategy):
            self._compute_gradients = tf.function(task.compute_gradients, jit_compile=True)
            self._eval_step = tf.function(task.eval_step, jit_compile=True)
        self._statistics = [v for v in task.model.non_trainable_variables
                            if v.dtype in ("float32", "float16", "bfloat16", "float64")]
        self._multi_worker = strategies.is_multi_worker(strategy)

    @tf.function
    def _train_loop(self, iterator, num_steps):
        sums = tf.zeros([len(task_lib.TRAIN_METRICS)], tf.float32)
        for _ in tf.range(num_steps):
            images, labels = next(iterator)
            per_replica = self.strategy.run(
                self._replica_train_step,
                args=(images, labels, self.step_variable.read_value()))
            sums += self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
            self.step_variable.assign_add(1)
        return sums

    def _replica_train_step(self, images, labels, step):
        return self.task.train_step(images, labels, step, self._compute_gradients)

    def _replica_eval_step(self, images, labels):
        # Through a Python function: a compiled function handed straight to
        # MirroredStrategy.run is placed on the first device for every replica.
        return self._eval_step(images, labels)

    def train(self, iterator, num_steps):
        """Runs `num_steps` steps; returns the summed `[loss_sum, correct, count]`."""
        return self._train_loop(iterator, tf.constant(num_steps, tf.int32)).numpy()

    def trace_train(self, iterator):
        """Traces the training loop for `iterator` without running a step, so that a memory
        measurement can take its baseline with the graph built (irevnet_tf.benchmarking)."""
        self._train_loop.get_concrete_function(iterator, tf.constant(1, tf.int32))

    @tf.function
    def _eval_loop(self, iterator, num_steps):
        sums = tf.zeros([len(task_lib.EVAL_METRICS)], tf.float32)
        for _ in tf.range(num_steps):
            images, labels = next(iterator)
            per_replica = self.strategy.run(self._replica_eval_step, args=(images, labels))
            sums += self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
        return sums

    def evaluate(self, iterator, num_steps):
        """Evaluates `num_steps` batches; returns `[loss_sum, top1, top5, count]`."""
        return self._eval_loop(iterator, tf.constant(num_steps, tf.int32)).numpy()

    def reconstruct(self, iterator):
        """`(inputs, decode(encode(inputs)))` of the first few images of replica 0."""
        originals, rebuilt = self._reconstruct(iterator)
        first = self.strategy.experimental_local_results
        return first(originals)[0].numpy(), first(rebuilt)[0].numpy()

    @tf.function
    def _reconstruct(self, iterator):
        images, _ = next(iterator)
        count = self.reconstruction_count
        return self.strategy.run(lambda x: self.task.reconstruct(x[:count]), args=(images,))

    def sync_batch_norm_statistics(self):
        """Averages every replica's copy of the moving statistics (see module docstring)."""
        if self.strategy.num_replicas_in_sync > 1 and self._statistics:
            self._sync()

    @tf.function
    def _sync(self):
        def average():
            context = tf.distribute.get_replica_context()
            # This replica's values as plain tensors (all-reducing the variables themselves
            # fails under MultiWorkerMirroredStrategy).
            means = context.all_reduce(tf.distribute.ReduceOp.MEAN,
                                       [tf.identity(v.value) for v in self._statistics])
            for variable, mean in zip(self._statistics, means):
                variable.assign(mean)

        self.strategy.run(average)

    def any_worker(self, flag):
        """True when `flag` is true on any worker (so that all workers stop together)."""
        if not self._multi_worker:
            return bool(flag)
        return bool(self._any_worker(tf.constant(float(flag))).numpy() > 0)

    @tf.function
    def _any_worker(self, flag):
        per_replica = self.strategy.run(tf.identity, args=(flag,))
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
