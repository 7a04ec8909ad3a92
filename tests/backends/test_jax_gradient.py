"""Tests of the memory-saving gradient on JAX (irevnet_tf/backends/jax_gradient.py) against
plain autodiff.

Run with `KERAS_BACKEND=jax python -m pytest tests/backends/test_jax_gradient.py -q`; on
other backends the module is skipped.

The reference is the same network built with `reversible=False` (ordinary JAX autodiff
through every block), with the same weights and the same dropout seed, differentiated the
way Keras' JAX trainer does it: `model.stateless_call` under `jax.value_and_grad`. On the
integer stream the rebuilt pairs are the forward's bit for bit, so the gradients agree up to
the order of float sums, in float64, float32 and mixed_bfloat16. Here under `jax.jit`, as
`model.fit` runs it; test_jax_gradient_eager.py checks it op by op (the networks and
gradient functions of both: jax_gradient_cases.py).
"""

import keras
import numpy as np
import pytest

if keras.backend.backend() != "jax":
    pytest.skip("the JAX memory-saving gradient needs KERAS_BACKEND=jax",
                allow_module_level=True)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from keras import ops  # noqa: E402

from irevnet_tf import stack as stack_lib  # noqa: E402
from irevnet_tf.backends import jax_gradient  # noqa: E402
from irevnet_tf.layers.fixed_point import checks_disabled  # noqa: E402
from irevnet_tf.model import IRevNet  # noqa: E402
from tests.backends.jax_gradient_cases import (  # noqa: E402
    BIJECTIVE, CONFIGS, SEED, assert_gradients_close, batch, build_pair, float64,
    float64_gradients_against_plain, gradients)


def test_model_uses_the_jax_reversible_gradient(monkeypatch):
    calls = []
    original = jax_gradient._block_backward

    def counting(block, *args, **kwargs):
        calls.append(block.name)
        return original(block, *args, **kwargs)

    monkeypatch.setattr(jax_gradient, "_block_backward", counting)
    reversible, _ = build_pair("bijective", dropout_rate=0.0)
    images, labels = batch("bijective")
    gradients(reversible, images, labels, dropout_seed=None)
    assert calls == [block.name for block in reversed(reversible.stack)]


# BatchNorm's element-wise path normalises float64 inputs in float64 (it took
# `keras.backend.result_type(dtype, "float32")` before, which is float32 for float64 on JAX,
# and under jit XLA's fusions then showed float32 rounding, 4e-6 of a gradient).
@pytest.mark.parametrize("kind", ["bijective", "injective"])
def test_float64_gradients_equal_plain_autodiff(kind, float64):
    float64_gradients_against_plain(kind, jit=True)


def float64_twin(model):
    """The plain-autodiff float64 model with `model`'s weights."""
    kwargs = {key: getattr(model, key) for key in ("dropout_rate", "seed")}
    kind = "bijective" if model.init_ds else "injective"
    reference = IRevNet(reversible=False, dtype="float64", **dict(CONFIGS[kind], **kwargs))
    reference.set_weights([w.astype(np.float64) if w.dtype == np.float32 else w
                           for w in model.get_weights()])
    return reference


def gradient_error(actual, expected):
    """The largest difference of any gradient, relative to the largest |gradient|."""
    largest = max(np.abs(np.asarray(e, np.float64)).max() for e in expected)
    return max(np.abs(np.asarray(a, np.float64) - np.asarray(e, np.float64)).max()
               for a, e in zip(actual, expected)) / largest


@pytest.mark.parametrize("kind", ["bijective", "injective"])
def test_float32_gradients_equal_plain_autodiff(kind, float64):
    """float32: the reversible gradient equals plain autodiff's to 1e-6 of the largest
    gradient (bijective), and against float64 plain autodiff it is as accurate as plain
    float32 autodiff, whose own error is about 1e-6 here (the injective model's padded
    channels make some gradients sensitive to float32 rounding)."""
    reversible, plain = build_pair(kind)
    images, labels = batch(kind)
    _, _, grads_rev = gradients(reversible, images, labels)
    _, _, grads_plain = gradients(plain, images, labels)
    assert all(g.dtype == jnp.float32 for g in grads_rev)
    _, _, expected = gradients(float64_twin(reversible), images.astype(jnp.float64), labels)
    plain_error = gradient_error(grads_plain, expected)
    reversible_error = gradient_error(grads_rev, expected)
    assert plain_error < 1e-5
    assert reversible_error <= max(2 * plain_error, 1e-6), (reversible_error, plain_error)
    assert gradient_error(grads_rev, grads_plain) <= (1e-6 if kind == "bijective" else 4e-6)


def test_mixed_bfloat16_gradients_equal_plain_mixed_precision():
    """F in bfloat16, the stream integer: the rebuilt pairs are the forward's bit for bit, so
    the gradients equal plain mixed-precision autodiff's, while bfloat16 itself moves them
    far more (the float32 model's gradients)."""
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    reversible, plain = build_pair("bijective", dtype=None, dropout_rate=0.1)
    assert all(block.bottleneck.compute_dtype == "bfloat16" for block in reversible.stack)
    keras.mixed_precision.set_global_policy("float32")
    float32_model = IRevNet(reversible=False, **dict(BIJECTIVE, dropout_rate=0.1, seed=5))
    float32_model.set_weights(plain.get_weights())
    images, labels = batch("bijective")
    _, _, grads_rev = gradients(reversible, images, labels)
    _, _, grads_plain = gradients(plain, images, labels)
    _, _, grads_float32 = gradients(float32_model, images, labels)
    assert all(g.dtype == jnp.float32 for g in grads_rev)
    assert_gradients_close(reversible, grads_rev, grads_plain, 1e-6)
    flat = [np.concatenate([np.ravel(np.asarray(g, np.float64)) for g in grads[1:]])
            for grads in (grads_plain, grads_float32)]
    assert np.abs(flat[0] - flat[1]).max() / np.abs(flat[1]).max() > 1e-3  # bfloat16 used


def test_moving_statistics_updated_once(float64):
    """The reversible step leaves the moving statistics of one training forward pass (the
    rebuilds in the backward pass do not update them again)."""
    reversible, plain = build_pair("injective", dtype="float64")
    images, labels = batch("injective", dtype="float64")
    _, new_values, _ = gradients(reversible, images, labels)
    forward_only = jax.jit(lambda trainable, non_trainable, images: plain.stateless_call(
        trainable, non_trainable, images, training=True,
        dropout_seed=jnp.asarray(SEED, jnp.uint32))[1])(
            [v.value for v in plain.trainable_variables],
            [v.value for v in plain.non_trainable_variables], images)
    moved = 0
    for variable, new, expected, old in zip(reversible.non_trainable_variables, new_values,
                                            forward_only, reversible.non_trainable_variables):
        np.testing.assert_allclose(np.asarray(new), np.asarray(expected), rtol=1e-12,
                                   atol=1e-14, err_msg=variable.path)
        moved += int(np.abs(np.asarray(new) - np.asarray(old.value)).max() > 0)
    assert moved >= 2 * len(reversible.stack)


def test_eager_call_assigns_moving_statistics():
    """Outside any stateless scope the updated statistics are assigned to the variables."""
    reversible, _ = build_pair("bijective", dropout_rate=0.0)
    images, _ = batch("bijective")
    before = [np.asarray(v.value) for v in reversible.non_trainable_variables]
    reversible(images, training=True)
    changed = [np.abs(np.asarray(v.value) - b).max() > 0
               for v, b in zip(reversible.non_trainable_variables, before)]
    assert sum(changed) >= 2 * len(reversible.stack)


def test_stack_alone_matches_run():
    """`irevnet_tf.stack.run_memory_saving` on a stack's pair against `stack.run`."""
    reversible, _ = build_pair("bijective", dropout_rate=0.2)
    images, _ = batch("bijective")
    pair = reversible.stem(reversible.grid.quantize_straight_through(
        reversible.normalize(images)))
    seeds = stack_lib.block_dropout_seeds(jnp.asarray(SEED, jnp.uint32), len(reversible.stack))
    variables = reversible.trainable_variables
    non_trainable = reversible.non_trainable_variables

    def loss(values, pair, memory_saving):
        state = list(zip(variables, values)) + [(v, v.value) for v in non_trainable]
        with keras.StatelessScope(state_mapping=state):
            if memory_saving:
                out = stack_lib.run_memory_saving(reversible.stack, pair, seeds)
            else:
                out = stack_lib.run(reversible.stack, pair, seeds, training=True)
        return sum(ops.sum(ops.cast(o, "float32") ** 2) for o in out)

    values = [v.value for v in variables]
    expected = jax.grad(loss, argnums=(0, 1))(values, pair, False)
    actual = jax.grad(loss, argnums=(0, 1))(values, pair, True)
    actual, expected = jax.tree_util.tree_leaves(actual), jax.tree_util.tree_leaves(expected)
    scale = max(float(jnp.abs(e).max()) for e in expected)
    error = max(float(jnp.abs(a - e).max()) for a, e in zip(actual, expected))
    assert error <= 1e-6 * scale


def test_dropout_without_seed_is_an_error():
    reversible, _ = build_pair("bijective", dropout_rate=0.2)
    images, _ = batch("bijective")
    pair = reversible.stem(reversible.grid.quantize_straight_through(
        reversible.normalize(images)))
    with pytest.raises(ValueError, match="dropout seed"):
        stack_lib.run_memory_saving(reversible.stack, pair, [None] * len(reversible.stack))


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_fit_trains(policy):
    """`model.fit` (Keras' stateless, jitted JAX train_step) takes the reversible gradient:
    finite decreasing loss, every weight moves, moving statistics updated."""
    keras.mixed_precision.set_global_policy(policy)
    model = IRevNet(reversible=True, **dict(BIJECTIVE, dropout_rate=0.1, seed=5))
    model.compile(optimizer=keras.optimizers.SGD(0.05),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    images = rng.standard_normal((16, *BIJECTIVE["input_shape"])).astype("float32")
    labels = rng.integers(0, BIJECTIVE["num_classes"], 16).astype("int32")
    before = [np.asarray(v.value) for v in model.weights]
    history = model.fit(images, labels, batch_size=8, epochs=3, verbose=0, shuffle=False)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    for variable, initial in zip(model.weights, before):
        if "seed" in variable.path:
            continue
        assert np.all(np.isfinite(np.asarray(variable.value))), variable.path
        assert np.abs(np.asarray(variable.value, np.float64) - initial).max() > 0, variable.path


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_rebuilt_inputs_equal_the_forward_inputs_bit_for_bit(policy):
    """Under jax.jit, with dropout: every block's input pair rebuilt by the backward pass is
    the training forward's integer pair bit for bit (F in float32 or in bfloat16)."""
    keras.mixed_precision.set_global_policy(policy)
    reversible, _ = build_pair("injective", dtype=None, dropout_rate=0.2)
    images, _ = batch("injective")
    variables = reversible.trainable_variables + reversible.non_trainable_variables

    def forward_and_rebuild(values, images):
        with keras.StatelessScope(list(zip(variables, values))), checks_disabled():
            pair = reversible.stem(reversible.grid.quantize_straight_through(
                reversible.normalize(images)))
            seeds = stack_lib.block_dropout_seeds(jnp.asarray(SEED, jnp.uint32),
                                                  len(reversible.stack))
            stream = tuple(reversible.grid.quantize(t) for t in pair)
            forward = [stream]
            for block, seed in zip(reversible.stack, seeds):
                stream = tuple(block(stream, training=True, dropout_seed=seed))
                forward.append(stream)
            grads = tuple(jnp.ones(t.shape, jnp.float32) for t in stream)
            rebuilt = []
            for index in reversed(range(len(reversible.stack))):
                block = reversible.stack[index]

                def mapping(block_values, block=block):
                    return (list(zip(block.trainable_variables, block_values))
                            + [(v, v.value) for v in block.non_trainable_variables])

                stream, grads, _ = jax_gradient._block_backward(
                    block, stream, grads, seeds[index], mapping,
                    [v.value for v in block.trainable_variables])
                rebuilt.insert(0, stream)
        return forward[:-1], rebuilt

    forward, rebuilt = jax.jit(forward_and_rebuild)([v.value for v in variables], images)
    for index, (original, again) in enumerate(zip(forward, rebuilt)):
        for a, b in zip(original, again):
            assert a.dtype == jnp.int32
            np.testing.assert_array_equal(np.asarray(b), np.asarray(a),
                                          err_msg=f"input of block {index}")


@pytest.mark.slow
def test_activation_memory_is_flat_in_depth_for_reversible_and_grows_for_plain():
    """XLA's own buffer assignment of the compiled gradient (what Keras' JAX train_step
    differentiates): the reversible gradient's temporaries stay flat when every stage gets
    three times the blocks, plain autodiff's grow with them."""
    from benchmarks.backend_memory_jax import gradient_memory

    temp = {(reversible, multiplier): gradient_memory(
        "irevnet_tiny", 8, multiplier, reversible)["temp"]
        for reversible in (True, False) for multiplier in (1, 3)}
    reversible_growth = temp[True, 3] / temp[True, 1]
    plain_growth = temp[False, 3] / temp[False, 1]
    assert reversible_growth < 1.25, temp
    assert plain_growth > 1.8, temp
    assert temp[True, 3] < temp[False, 3] / 1.5, temp
