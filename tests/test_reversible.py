"""Tests of the memory-saving gradient (irevnet_tf/stack.py: run_memory_saving) against plain
autodiff.

The reference is always an independent computation: the same model built with
`reversible=False` (ordinary TensorFlow autodiff, which stores every activation), the
same weights and the same dropout seed. On the integer stream the rebuilt pairs are the
forward's bit for bit, so the gradients agree up to the order of float sums, in float64,
float32 and mixed_bfloat16 alike.

Batch norms get random gamma, beta and moving statistics, as in a trained model, and
separately the fresh model (gamma 1, beta 0), whose injective blocks make channels exactly
constant: there ReLUs sit exactly on their kink, where any difference in a rebuilt pair
would flip the side the backward takes (see the tests of fresh injective models).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from irevnet_tf import stack as stack_lib
from irevnet_tf.backends import tensorflow_gradient
from irevnet_tf.model import IRevNet
from tests.helpers import randomize_batch_norms

# Stage 1: a stride-1 injective block (3 image channels split 1 + 2, padded to 8 + 8),
# then two bijective stride-1 blocks; stage 2: a stride-2 block, then a stride-1 block.
INJECTIVE = dict(blocks=(3, 2), strides=(1, 2), channels=(8, 32), init_ds=0,
                 input_shape=(8, 8, 3), num_classes=5)
# After an initial psi: two stride-1 blocks, then a stride-2 block and two stride-1 blocks.
BIJECTIVE = dict(blocks=(2, 3), strides=(1, 2), channels=(6, 24), init_ds=2,
                 input_shape=(16, 16, 3), num_classes=5)
CONFIGS = {"injective": INJECTIVE, "bijective": BIJECTIVE}
BATCH = 6
SEED = (11, 23)
# Batch-norm shifts (beta, moving mean) of the randomised models: large, to exercise them.
SHIFT_STD = 0.5
FLOAT64_TOLERANCE = 1e-10


def build_pair(kind, dtype="float64", dropout_rate=0.2, randomize=True, **overrides):
    """The same network twice, reversible and plain, with identical weights."""
    kwargs = dict(CONFIGS[kind], dropout_rate=dropout_rate, seed=5, dtype=dtype, **overrides)
    reversible = IRevNet(reversible=True, **kwargs)
    if randomize:
        randomize_batch_norms(reversible, seed=1, shift_std=SHIFT_STD)
    plain = IRevNet(reversible=False, **kwargs)
    plain.set_weights(reversible.get_weights())
    return reversible, plain


def batch(kind, dtype="float64", size=BATCH, seed=0):
    rng = np.random.default_rng(seed)
    shape = CONFIGS[kind]["input_shape"]
    images = tf.constant(rng.standard_normal((size, *shape)).astype(dtype))
    labels = tf.constant(rng.integers(0, CONFIGS[kind]["num_classes"], size), tf.int32)
    return images, labels


def loss_and_gradients(model, images, labels, dropout_seed=SEED):
    """Loss and d loss / d (images, *trainable variables), the way a trainer's loop does it."""
    with tf.GradientTape() as tape:
        tape.watch(images)
        logits = model(images, training=True,
                       dropout_seed=None if dropout_seed is None else tf.constant(dropout_seed))
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
            labels, logits, from_logits=True))
    return loss, tape.gradient(loss, [images] + model.trainable_variables)


def relative_error(actual, expected):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    scale = np.linalg.norm(expected)
    difference = np.linalg.norm(actual - expected)
    return difference / scale if scale else difference


def assert_gradients_close(model, actual, expected, tolerance):
    names = ["images"] + [v.path for v in model.trainable_variables]
    assert len(actual) == len(expected) == len(names)
    errors = {}
    for name, a, e in zip(names, actual, expected):
        assert a is not None and e is not None, f"no gradient for {name}"
        errors[name] = relative_error(a, e)
    worst = max(errors, key=errors.get)
    assert errors[worst] <= tolerance, f"worst relative error {errors[worst]:.3g} at {worst}"


def moving_statistics(model):
    return {v.path: v.numpy() for v in model.non_trainable_variables
            if v.path.endswith(("moving_mean", "moving_variance"))}


# --- gradients ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["eager", "function"])
@pytest.mark.parametrize("kind", ["injective", "bijective"])
def test_gradients_equal_plain_autodiff_float64(kind, mode):
    reversible, plain = build_pair(kind)
    images, labels = batch(kind)
    compute = loss_and_gradients if mode == "eager" else tf.function(loss_and_gradients)
    loss_rev, grads_rev = compute(reversible, images, labels)
    loss_plain, grads_plain = compute(plain, images, labels)
    assert abs(float(loss_rev) - float(loss_plain)) <= 1e-12 * abs(float(loss_plain))
    assert_gradients_close(reversible, grads_rev, grads_plain, FLOAT64_TOLERANCE)


def test_dropout_masks_matter_so_the_seed_test_can_fail():
    """With different dropout seeds the gradients differ: the equality above needs the
    recomputation to reuse the forward's masks."""
    reversible, plain = build_pair("bijective")
    images, labels = batch("bijective")
    _, grads_rev = loss_and_gradients(reversible, images, labels, dropout_seed=(1, 2))
    _, grads_plain = loss_and_gradients(plain, images, labels, dropout_seed=(3, 4))
    assert relative_error(np.concatenate([tf.reshape(g, [-1]) for g in grads_rev[1:]]),
                          np.concatenate([tf.reshape(g, [-1]) for g in grads_plain[1:]])) > 1e-3


@pytest.mark.parametrize("mode", ["eager", "function"])
def test_fresh_injective_model_gradients_equal_plain_autodiff_float64(mode):
    """A fresh injective model (gamma 1, beta 0): the padded channels are exactly constant,
    so batch norms put ReLUs exactly on their kink there, where any rounding noise in a
    rebuilt pair would flip the side the backward takes. The rebuild is exact, and all
    gradients, beta's too, match."""
    reversible, plain = build_pair("injective", randomize=False)
    images, labels = batch("injective")
    compute = loss_and_gradients if mode == "eager" else tf.function(loss_and_gradients)
    _, grads_rev = compute(reversible, images, labels)
    _, grads_plain = compute(plain, images, labels)
    assert_gradients_close(reversible, grads_rev, grads_plain, FLOAT64_TOLERANCE)


def test_fresh_injective_model_float32_gradients_as_accurate_as_plain():
    """float32, judged against float64 plain autodiff: the reversible gradient is as
    accurate as plain float32 autodiff. (A float stream's rebuild made this 6 % off: batch
    norm divided its rounding noise in the constant channels by sqrt(epsilon).)"""
    kwargs = dict(INJECTIVE, dropout_rate=0.0)
    reversible = IRevNet(reversible=True, **kwargs)
    plain = IRevNet(reversible=False, **kwargs)
    plain.set_weights(reversible.get_weights())
    reference = IRevNet(reversible=False, dtype="float64", **kwargs)
    reference.set_weights([w.astype(np.float64) if w.dtype == np.float32 else w
                           for w in reversible.get_weights()])
    images, labels = batch("injective", dtype="float32")
    _, expected = loss_and_gradients(reference, tf.cast(images, tf.float64), labels)

    def error(model):
        _, grads = loss_and_gradients(model, images, labels)
        return relative_error(np.concatenate([np.ravel(g) for g in grads[1:]]),
                              np.concatenate([np.ravel(g) for g in expected[1:]]))

    plain_error, reversible_error = error(plain), error(reversible)
    assert plain_error < 1e-5
    assert reversible_error <= max(3 * plain_error, 2e-6), (reversible_error, plain_error)


def test_model_uses_the_reversible_gradient_by_default(monkeypatch):
    calls = []
    original = tensorflow_gradient.block_backward

    def counting_block_backward(*args, **kwargs):
        calls.append(args[0].name)
        return original(*args, **kwargs)

    monkeypatch.setattr(tensorflow_gradient, "block_backward", counting_block_backward)
    kwargs = dict(BIJECTIVE)
    model = IRevNet(**kwargs)
    assert model.reversible
    images, labels = batch("bijective", dtype="float32")
    loss_and_gradients(model, images, labels)
    assert calls == [block.name for block in reversed(model.stack)]
    calls.clear()
    loss_and_gradients(IRevNet(reversible=False, **kwargs), images, labels)
    assert not calls


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("kind", ["injective", "bijective"])
def test_rebuilt_inputs_equal_the_forward_inputs_bit_for_bit(kind, policy):
    """block_backward's rebuilt pairs are the integer pairs the forward saw, block by
    block, with F in float32 or in bfloat16 and dropout on."""
    model = IRevNet(dtype=policy, **dict(CONFIGS[kind], dropout_rate=0.2, seed=5))
    randomize_batch_norms(model, seed=1, shift_std=SHIFT_STD)
    images, _ = batch(kind, dtype="float32")
    seeds = stack_lib.block_dropout_seeds(tf.constant(SEED), len(model.stack))
    pairs = [model.stem(model.grid.quantize(images))]
    for block, seed in zip(model.stack, seeds):
        pairs.append(block(pairs[-1], training=True, dropout_seed=seed,
                           update_statistics=False))
    pair = pairs[-1]
    assert pair[0].dtype == tf.int32
    grads = tuple(tf.ones(t.shape, tf.float32) for t in pair)
    for index in reversed(range(len(model.stack))):
        pair, grads, _ = tensorflow_gradient.block_backward(model.stack[index], pair, grads,
                                                       seeds[index])
        for rebuilt, original in zip(pair, pairs[index]):
            np.testing.assert_array_equal(rebuilt.numpy(), original.numpy(),
                                          err_msg=model.stack[index].name)


# --- batch-norm statistics ---------------------------------------------------------------


@pytest.mark.parametrize("mode", ["eager", "function"])
def test_moving_statistics_updated_once_like_plain(mode):
    reversible, plain = build_pair("injective")
    initial = moving_statistics(reversible)
    images, labels = batch("injective")
    compute = loss_and_gradients if mode == "eager" else tf.function(loss_and_gradients)
    compute(reversible, images, labels)
    compute(plain, images, labels)
    after_rev, after_plain = moving_statistics(reversible), moving_statistics(plain)
    for name, value in initial.items():
        assert np.abs(after_plain[name] - value).max() > 1e-3, f"{name} did not change"
        np.testing.assert_allclose(after_rev[name], after_plain[name], rtol=1e-12, atol=0,
                                   err_msg=name)


def fit_one_step(model, images, labels, learning_rate=0.25, epochs=1):
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=False)
    return model.fit(images, labels, batch_size=int(images.shape[0]), epochs=epochs,
                     shuffle=False, verbose=0)


def test_fit_step_equals_plain_fit_step_float64():
    """One `fit` step: the same weight update and moving statistics as reversible=False.

    Both models have the same `seed`, so `fit` draws the same dropout masks for both.
    The learning rate is a power of two, exact in the optimizer's float32 variable."""
    reversible, plain = build_pair("injective", dropout_rate=0.2)
    initial_weights = [w.copy() for w in plain.get_weights()]
    images, labels = batch("injective")
    fit_one_step(reversible, images, labels)
    fit_one_step(plain, images, labels)
    changed = 0
    for variable_rev, variable_plain, initial in zip(
            reversible.weights, plain.weights, initial_weights):
        if "seed_generator" in variable_rev.path:
            continue
        # Some changes are exactly 0 (the first block's F reads only padded zeros).
        change = variable_plain.numpy() - initial
        changed += bool(np.abs(change).max() > 0)
        assert relative_error(variable_rev.numpy() - initial, change) <= FLOAT64_TOLERANCE, \
            variable_rev.path
    assert changed >= 0.8 * len(initial_weights)


def test_fit_trains_a_small_learnable_problem():
    """Digits (8x8, tiled to 3 channels): the training loss goes clearly down."""
    from irevnet_tf.data import digits

    images, labels = digits.load_digits()
    images = np.repeat(images[:256, :, :, None].astype(np.float32) / 8.0 - 1.0, 3, axis=-1)
    model = IRevNet(blocks=(1, 1), strides=(1, 2), channels=(8, 32), init_ds=0,
                    input_shape=(8, 8, 3), num_classes=10)
    assert model.reversible
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=False)
    history = model.fit(images, labels[:256], batch_size=32, epochs=5, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.75 * losses[0], losses


# --- XLA ---------------------------------------------------------------------------------


def make_train_step(model, optimizer):
    def train_step(images, labels, dropout_seed):
        with tf.GradientTape() as tape:
            logits = model(images, training=True, dropout_seed=dropout_seed)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                labels, logits, from_logits=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss

    return train_step


def train_step_update(model, images, labels, jit_compile, dropout_seed=SEED):
    before = [v.numpy() for v in model.trainable_variables]
    optimizer = keras.optimizers.SGD(learning_rate=0.25)
    optimizer.build(model.trainable_variables)
    step = tf.function(make_train_step(model, optimizer), jit_compile=jit_compile)
    step(images, labels, tf.constant(dropout_seed))
    return [v.numpy() - b for v, b in zip(model.trainable_variables, before)]


def test_xla_train_step_matches_non_xla_step():
    """Without dropout (XLA draws other random numbers than the CPU kernels for the same
    seed), the compiled reversible step makes the non-compiled step's update."""
    reversible, _ = build_pair("bijective", dropout_rate=0.0)
    compiled = IRevNet(reversible=True, **dict(BIJECTIVE, dropout_rate=0.0, dtype="float64"))
    compiled.set_weights(reversible.get_weights())
    images, labels = batch("bijective")
    expected = train_step_update(reversible, images, labels, jit_compile=False)
    actual = train_step_update(compiled, images, labels, jit_compile=True)
    for variable, a, e in zip(compiled.trainable_variables, actual, expected):
        assert relative_error(a, e) <= 1e-9, variable.path
    expected_statistics = moving_statistics(reversible)
    for name, value in moving_statistics(compiled).items():
        np.testing.assert_allclose(value, expected_statistics[name], rtol=1e-10, err_msg=name)


@pytest.mark.slow
def test_xla_reversible_step_matches_xla_plain_step_with_dropout():
    """Under XLA with dropout (masks from XLA's random numbers in both)."""
    reversible, plain = build_pair("injective", dropout_rate=0.2)
    images, labels = batch("injective")
    actual = train_step_update(reversible, images, labels, jit_compile=True)
    expected = train_step_update(plain, images, labels, jit_compile=True)
    for variable, a, e in zip(reversible.trainable_variables, actual, expected):
        assert relative_error(a, e) <= FLOAT64_TOLERANCE, variable.path


# --- MirroredStrategy --------------------------------------------------------------------


@pytest.fixture(scope="module")
def mirrored_strategy():
    """One strategy for the module, reducing through one device rather than with
    collective ops: strategies in one process reuse collective instance keys, and
    TensorFlow aborts when a reused key sees another dtype (this module's float64, then
    the trainer tests' float32)."""
    return tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice())


def test_mirrored_strategy_update_equals_single_device_average(mirrored_strategy):
    """Two replicas, each computing gradients of its half of the global batch with a tape;
    the optimizer's apply all-reduces them.

    The batch norms compute statistics per replica (as the release does per GPU), so the
    reference is not one forward pass over the whole batch: it is a single-device plain
    autodiff computation of each half's gradient on its own (per-half statistics),
    summed. This keeps batch norm in training mode in the test, which freezing it would
    not. Each replica also updates its own copy of the moving statistics once, from its
    half (Keras 3 creates them with aggregation "none"), which the test checks too.
    """
    strategy = mirrored_strategy
    kwargs = dict(BIJECTIVE, dropout_rate=0.2, seed=5, dtype="float64")
    with strategy.scope():
        model = IRevNet(reversible=True, **kwargs)
        randomize_batch_norms(model, seed=1, shift_std=SHIFT_STD)
        optimizer = keras.optimizers.SGD(learning_rate=0.25)
        optimizer.build(model.trainable_variables)
    reference = IRevNet(reversible=False, **kwargs)
    reference.set_weights(model.get_weights())
    initial = [v.numpy() for v in reference.trainable_variables]
    initial_statistics = reference.get_weights()
    images, labels = batch("bijective", size=8)
    global_batch = int(images.shape[0])
    half = global_batch // 2
    seed = tf.constant(SEED)

    def replica_step(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True, dropout_seed=seed)
            loss = tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(
                labels, logits, from_logits=True)) / global_batch
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)

    @tf.function
    def distributed_step(images, labels):
        strategy.run(replica_step, args=(images, labels))

    def halves(tensor):
        return strategy.experimental_distribute_values_from_function(
            lambda context: tensor[context.replica_id_in_sync_group * half:][:half])

    distributed_step(halves(images), halves(labels))

    expected_update = [np.zeros_like(v) for v in initial]
    expected_statistics = []
    for index in range(2):
        reference.set_weights(initial_statistics)
        part = slice(index * half, (index + 1) * half)
        with tf.GradientTape() as tape:
            logits = reference(images[part], training=True, dropout_seed=seed)
            loss = tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(
                labels[part], logits, from_logits=True)) / global_batch
        for total, grad in zip(expected_update,
                               tape.gradient(loss, reference.trainable_variables)):
            total -= 0.25 * grad.numpy()
        expected_statistics.append(moving_statistics(reference))

    for variable, before, expected in zip(model.trainable_variables, initial,
                                          expected_update):
        assert relative_error(variable.numpy() - before, expected) <= FLOAT64_TOLERANCE, \
            variable.path
    for variable in model.non_trainable_variables:
        if not variable.path.endswith(("moving_mean", "moving_variance")):
            continue
        replica_values = [component.numpy() for component in variable.value.values]
        for replica, value in enumerate(replica_values):
            np.testing.assert_allclose(value, expected_statistics[replica][variable.path],
                                       rtol=1e-12, err_msg=f"{variable.path} replica {replica}")


@pytest.mark.slow
def test_fit_under_mirrored_strategy_trains(mirrored_strategy):
    """`model.fit` with two replicas uses the reversible gradient and updates the weights
    (steps_per_execution=1 and no XLA: Keras 3's fit under MirroredStrategy fails with
    either, reversible or not)."""
    strategy = mirrored_strategy
    with strategy.scope():
        model = IRevNet(**dict(BIJECTIVE, dropout_rate=0.1))
        model.compile(optimizer=keras.optimizers.SGD(0.05),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      jit_compile=False, steps_per_execution=1)
    before = [v.numpy() for v in model.trainable_variables]
    images, labels = batch("bijective", dtype="float32", size=16)
    history = model.fit(images, labels, batch_size=8, epochs=2, verbose=0)
    assert all(np.isfinite(history.history["loss"]))
    changed = [np.abs(v.numpy() - b).max() > 0 for v, b in zip(model.trainable_variables, before)]
    assert all(changed)


# --- mixed precision ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["injective", "bijective"])
def test_mixed_bfloat16_gradients_equal_plain_mixed_precision(kind):
    """Under mixed_bfloat16 F runs in bfloat16 and the stream stays integer, so the rebuilt
    pairs are the forward's bit for bit and F gives the same bits again: the reversible
    gradients equal plain mixed-precision autodiff's (float32 sums in another order aside),
    while bfloat16 itself moves them far more (the float32 model's gradients)."""
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    reversible, plain = build_pair(kind, dtype=None, dropout_rate=0.1)
    assert all(block.bottleneck.compute_dtype == "bfloat16" for block in reversible.stack)
    keras.mixed_precision.set_global_policy("float32")
    float32_model = IRevNet(reversible=False, **dict(CONFIGS[kind], dropout_rate=0.1, seed=5))
    float32_model.set_weights(plain.get_weights())

    images, labels = batch(kind, dtype="float32")
    _, grads_rev = loss_and_gradients(reversible, images, labels)
    _, grads_plain = loss_and_gradients(plain, images, labels)
    _, grads_float32 = loss_and_gradients(float32_model, images, labels)

    def flat(grads):
        return np.concatenate([np.reshape(np.asarray(g, np.float64), [-1]) for g in grads[1:]])

    assert all(g.dtype == tf.float32 for g in grads_rev)
    bfloat16_error = relative_error(flat(grads_plain), flat(grads_float32))
    assert bfloat16_error > 1e-3  # bfloat16 really was used
    assert_gradients_close(reversible, grads_rev, grads_plain, 1e-6)


def test_mixed_bfloat16_fit_step_trains():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = IRevNet(**dict(BIJECTIVE, dropout_rate=0.1))
    before = [v.numpy() for v in model.trainable_variables]
    images, labels = batch("bijective", dtype="float32")
    history = fit_one_step(model, images, labels, learning_rate=0.05)
    assert np.isfinite(history.history["loss"][0])
    for variable, initial in zip(model.trainable_variables, before):
        assert variable.dtype == "float32"
        assert np.all(np.isfinite(variable.numpy()))
        assert np.abs(variable.numpy() - initial).max() > 0, variable.path


# --- memory ------------------------------------------------------------------------------
# The probes are irevnet_tf/benchmarking/memory_probes.py, each run in a fresh process (its
# docstring says what each measures and why a fresh process).


def run_memory_probe(*arguments, **env):
    """Runs `python -m irevnet_tf.benchmarking.memory_probes *arguments` with TensorFlow's
    allocator keeping statistics; the dict of its PEAKS line."""
    import json
    import subprocess
    import sys

    from tests.helpers.processes import python_env

    completed = subprocess.run(
        [sys.executable, "-m", "irevnet_tf.benchmarking.memory_probes", *map(str, arguments)],
        env=python_env(**{"TF_CPU_ALLOCATOR_USE_BFC": "true", **env}), capture_output=True,
        text=True, timeout=900, check=False)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("PEAKS ")]
    assert lines, completed.stderr[-3000:]
    return json.loads(lines[0][len("PEAKS "):])


def measure_gradient_memory(mode, batch_size=32):
    peaks = run_memory_probe("gradients", mode, batch_size)
    return {(int(k.split(",")[0]), k.split(",")[1] == "True"): v for k, v in peaks.items()}


@pytest.mark.parametrize("mode", ["eager", "function"])
def test_reversible_gradient_memory_does_not_grow_with_depth(mode):
    """Tensor memory of a gradient computation (`tf.GradientTape` over the training-mode
    loss, what every training step runs) minus the gradients themselves: plain autodiff
    holds every activation, so doubling the blocks adds about as much again; the reversible
    gradient holds a few pairs and one block's activations at a time. (Bounds are loose: the
    graph executor's op order varies by a few MB between runs.)"""
    peaks = measure_gradient_memory(mode)
    plain_growth = peaks[2, False] - peaks[1, False]
    reversible_growth = peaks[2, True] - peaks[1, True]
    # The probe must see plain autodiff's activations grow, or the bound below says nothing
    # (measured: 25-30 MB more at twice the depth, a quarter of the 6-block peak or just
    # under it in graph mode, whose op order moves a few MB between runs).
    assert plain_growth > 0.15 * peaks[1, False], peaks
    # At 6 blocks fixed costs (stem, head, input and output pairs, per-op scratch) are most
    # of both peaks: measured 77 MB reversible against 99 MB plain here (the float stream
    # this replaced: 77 against 104).
    assert peaks[1, True] < 0.85 * peaks[1, False], peaks
    assert reversible_growth < 0.25 * plain_growth, peaks


@pytest.mark.parametrize("mode", ["train", pytest.param("fit", marks=pytest.mark.slow)])
def test_reversible_training_step_does_not_hold_all_gradients(mode):
    """The whole training step as it ships updates each variable as soon as its gradient
    exists, so it never holds every gradient at once: its peak stays below that of the same
    step with Keras' one-replica all-reduce put back by at least half a copy of the
    parameters.

    "train": the trainer's step (`ClassificationTask.train_step` through `TrainingLoops`,
    with its non-finite-gradient check and step counter). "fit": `model.fit` itself
    (`compile(optimizer=MomentumSGD)`, one batch per call), which runs Keras' `train_step`
    inside the default strategy's `run`. Each peak is over the memory live before the step,
    measured after a first step that creates the optimizer's slots. (The shipped step's
    peak moved by up to 11 MB from step to step, with the intra-op threads' timing, so the
    largest of three is taken. Measured: shipped 33-44 MB (train) and 23-28 MB (fit),
    bound 74 MB; see docs/memory_saving.md.)"""
    peaks = run_memory_probe("step", mode)
    parameters = peaks["parameters"]
    holding, shipped = min(peaks["holding"]), max(peaks["shipped"])
    # The probe sees a held copy: the holding step's peak exceeds one copy of the
    # parameters (measured 138-148 MB against 128.5 MB), or the bound below says nothing.
    assert holding > parameters, peaks
    assert shipped < holding - parameters / 2, peaks


@pytest.mark.slow
def test_xla_reversible_step_memory_does_not_grow_with_depth(tmp_path):
    """XLA ignores control dependencies; the rebuild's data dependency on the later
    block's gradients must keep it from holding many blocks' activations. Measured on the
    trainer's step with `jit_compile=True` (XLA compiles its forward and backward pass) by
    XLA's own buffer assignment, which includes the parameters and the gradients, hence the
    loose bounds."""
    from irevnet_tf.benchmarking import train_step

    totals = {}
    for multiplier in (1, 2):
        for reversible in (True, False):
            dump = tmp_path / f"{multiplier}_{reversible}"
            run_memory_probe("xla", multiplier, reversible, XLA_FLAGS=f"--xla_dump_to={dump}",
                             TF_CPU_ALLOCATOR_USE_BFC=None)
            totals[multiplier, reversible] = train_step.xla_buffer_bytes(
                str(dump), "compute_gradients")
    plain_growth = totals[2, False] - totals[1, False]
    reversible_growth = totals[2, True] - totals[1, True]
    assert totals[1, True] < 0.8 * totals[1, False], totals
    assert reversible_growth < 0.5 * plain_growth, totals
