"""Tests of the PyTorch memory-saving gradient (irevnet_tf/backends/torch_gradient.py).

The reference is plain autodiff on the same weights: `irevnet_tf.stack.run` (or the model
built with `reversible=False`), which keeps every activation. On the integer stream the
rebuilt pairs are the forward's bit for bit, so the gradients agree up to the order of float
sums. The toy block (tests/backends/toy_block.py) tests the Function's mechanics on its own.

Run with `KERAS_BACKEND=torch python -m pytest tests/backends/test_torch_gradient.py -q`.
"""

import keras
import numpy as np
import pytest

if keras.backend.backend() != "torch":
    pytest.skip("the PyTorch memory-saving gradient needs KERAS_BACKEND=torch",
                allow_module_level=True)

import torch  # noqa: E402

from benchmarks.backend_memory_torch import (  # noqa: E402
    SavedTensorMeter, gradient_peak_bytes, model_for_depth)
from irevnet_tf.backends import torch_gradient  # noqa: E402
from irevnet_tf.model import IRevNet  # noqa: E402
from tests.helpers import randomize_batch_norms  # noqa: E402
from tests.backends.toy_block import ToyBlock  # noqa: E402

BATCH = 4
SEED = (11, 23)
FLOAT64_TOLERANCE = 1e-10
FLOAT32_TOLERANCE = 1e-6


def max_relative_errors(actual, expected, names):
    """Per tensor: max |actual - expected| / max |expected| (the largest gradient of all
    when a tensor's expected gradient is exactly zero)."""
    overall = max(float(e.abs().max()) for e in expected)
    errors = {}
    for name, a, e in zip(names, actual, expected):
        assert a is not None and e is not None, f"no gradient for {name}"
        assert a.shape == e.shape and a.dtype == e.dtype, name
        scale = float(e.abs().max()) or overall
        errors[name] = float((a.double() - e.double()).abs().max()) / scale
    return errors


def assert_gradients_close(actual, expected, names, tolerance):
    errors = max_relative_errors(actual, expected, names)
    worst = max(errors, key=errors.get)
    assert errors[worst] <= tolerance, f"worst relative error {errors[worst]:.3g} at {worst}"


# --- the Function's mechanics, on a toy block -------------------------------------------


def toy_blocks(dtype="float64", dropout_rate=0.2):
    """An injective stride-1 block (1 + 2 channels padded to 8 + 8), a bijective stride-1
    block and a stride-2 block, built, with random batch-norm parameters."""
    blocks = [ToyBlock(8, 1, dropout_rate, name="toy0", dtype=dtype),
              ToyBlock(8, 1, dropout_rate, name="toy1", dtype=dtype),
              ToyBlock(32, 2, dropout_rate, name="toy2", dtype=dtype)]
    shapes = [[(BATCH, 8, 8, 1), (BATCH, 8, 8, 2)], [(BATCH, 8, 8, 8)] * 2,
              [(BATCH, 8, 8, 8)] * 2]
    rng = np.random.default_rng(1)
    for block, shape in zip(blocks, shapes):
        block.build(shape)
        block.norm.gamma.assign(rng.uniform(0.5, 1.5, block.norm.gamma.shape))
        block.norm.beta.assign(rng.normal(0.0, 0.5, block.norm.beta.shape))
    return blocks


def toy_loss_and_gradients(blocks, images, reversible, seeds=(3, 4, 5)):
    images = images.detach().requires_grad_(True)
    weights = [v.value for block in blocks for v in block.trainable_weights]
    stream = blocks[0].grid.quantize_straight_through(images)
    pair = (stream[..., :1], stream[..., 1:])
    if reversible:
        pair = torch_gradient.run_memory_saving(blocks, pair, list(seeds))
    else:
        for block, seed in zip(blocks, seeds):
            pair = block(pair, training=True, dropout_seed=seed)
    outputs = torch.cat(list(pair), dim=-1)
    loss = (outputs.sin() * outputs).sum()
    return loss, torch.autograd.grad(loss, [images] + weights)


def test_toy_gradients_equal_plain_autodiff_float64():
    blocks = toy_blocks()
    images = torch.randn(BATCH, 8, 8, 3, dtype=torch.float64)
    loss_rev, grads_rev = toy_loss_and_gradients(blocks, images, reversible=True)
    loss_plain, grads_plain = toy_loss_and_gradients(blocks, images, reversible=False)
    assert abs(float(loss_rev.detach()) - float(loss_plain.detach())) <= 1e-12 * abs(
        float(loss_plain.detach()))
    names = ["images"] + [v.path for b in blocks for v in b.trainable_weights]
    assert_gradients_close(grads_rev, grads_plain, names, FLOAT64_TOLERANCE)


def test_toy_dropout_masks_matter_so_the_seed_test_can_fail():
    blocks = toy_blocks()
    images = torch.randn(BATCH, 8, 8, 3, dtype=torch.float64)
    _, grads_rev = toy_loss_and_gradients(blocks, images, True, seeds=(3, 4, 5))
    _, grads_plain = toy_loss_and_gradients(blocks, images, False, seeds=(6, 7, 8))
    names = ["images"] + [v.path for b in blocks for v in b.trainable_weights]
    assert max(max_relative_errors(grads_rev, grads_plain, names).values()) > 1e-3


def test_toy_loss_of_one_output_only():
    """A loss that reads only one half of the output pair (the other half's gradient is
    zero)."""
    blocks = toy_blocks()
    images = torch.randn(BATCH, 8, 8, 3, dtype=torch.float64, requires_grad=True)
    stream = blocks[0].grid.quantize_straight_through(images)
    pair = (stream[..., :1], stream[..., 1:])
    _, y1 = torch_gradient.run_memory_saving(blocks, pair, [1, 2, 3])
    actual = torch.autograd.grad((y1 * y1.cos()).sum(), [images])
    for block, seed in zip(blocks, [1, 2, 3]):
        pair = block(pair, training=True, dropout_seed=seed)
    expected = torch.autograd.grad((pair[1] * pair[1].cos()).sum(), [images])
    assert_gradients_close(actual, expected, ["images"], FLOAT64_TOLERANCE)


def test_toy_saves_only_the_output_pair_and_updates_statistics_once():
    blocks = toy_blocks(dropout_rate=0.0)
    images = torch.randn(BATCH, 8, 8, 3, dtype=torch.float64, requires_grad=True)
    stream = blocks[0].grid.quantize_straight_through(images)
    before = [v.value.clone() for b in blocks for v in b.non_trainable_weights]
    outputs = torch_gradient.run_memory_saving(
        blocks, (stream[..., :1], stream[..., 1:]), [None] * 3)
    after_forward = [v.value.clone() for b in blocks for v in b.non_trainable_weights]
    node = outputs[0].grad_fn
    assert node is outputs[1].grad_fn
    saved = node.saved_tensors
    assert [(t.dtype, tuple(t.shape)) for t in saved] == [(torch.int32, (BATCH, 4, 4, 32))] * 2
    assert not [name for name, value in vars(node).items() if torch.is_tensor(value)]
    torch.autograd.grad(sum(o.sum() for o in outputs), [images])
    after_backward = [v.value for b in blocks for v in b.non_trainable_weights]
    assert any(not torch.equal(a, b) for a, b in zip(before, after_forward))
    assert all(torch.equal(a, b) for a, b in zip(after_forward, after_backward))


def test_toy_memory_is_flat_in_depth():
    def peak(depth, reversible):
        blocks = [ToyBlock(8, 1, name=f"toy{i}") for i in range(depth)]
        for block in blocks:
            block.build([(BATCH, 8, 8, 8)] * 2)
        weights = [v.value for b in blocks for v in b.trainable_weights]
        inputs = torch.randn(BATCH, 8, 8, 16, requires_grad=True)
        with SavedTensorMeter() as meter:
            pair = (inputs[..., :8], inputs[..., 8:])
            if reversible:
                pair = torch_gradient.run_memory_saving(blocks, pair, [None] * depth)
            else:
                for block in blocks:
                    pair = block(pair, training=True)
            torch.autograd.grad(sum((p * p).sum() for p in pair), [inputs] + weights)
        assert meter.live == 0  # every graph freed
        return meter.peak

    assert peak(8, True) == peak(2, True)
    assert peak(8, False) > 3 * peak(2, False)
    assert peak(8, False) > 3 * peak(8, True)


@pytest.mark.parametrize("inside", [False, True])
def test_toy_stateless_scope_gradients_are_those_of_its_values(inside):
    """Under `keras.StatelessScope` (as `stateless_call` uses it) the Function takes the
    scope's values as the weights, and its backward pass reads them again, whether it runs
    inside the scope or after it."""
    blocks = toy_blocks()
    images = torch.randn(BATCH, 8, 8, 3, dtype=torch.float64)
    _, expected = toy_loss_and_gradients(blocks, images, reversible=True)
    variables = [v for block in blocks for v in block.trainable_weights]
    values = [(v.value.detach() * 1.0).requires_grad_(True) for v in variables]
    with keras.StatelessScope(list(zip(variables, values))):
        stream = blocks[0].grid.quantize_straight_through(images)
        pair = torch_gradient.run_memory_saving(
            blocks, (stream[..., :1], stream[..., 1:]), [3, 4, 5])
        outputs = torch.cat(list(pair), dim=-1)
        loss = (outputs.sin() * outputs).sum()
        if inside:
            grads = torch.autograd.grad(loss, values)
    if not inside:
        grads = torch.autograd.grad(loss, values)
    assert all(v.value.grad is None for v in variables)
    assert_gradients_close(grads, expected[1:], [v.path for v in variables],
                           FLOAT64_TOLERANCE)


def test_toy_mixed_precision_gradients_reach_the_float32_parameters():
    """Inside a mixed-precision layer's autocast scope `variable.value` is a bfloat16 copy;
    the Function must take the float32 Parameters themselves."""
    blocks = toy_blocks(dtype="mixed_bfloat16", dropout_rate=0.0)
    images = torch.randn(BATCH, 8, 8, 3)
    stream = blocks[0].grid.quantize_straight_through(images)
    with keras.src.backend.AutocastScope("bfloat16"):
        pair = torch_gradient.run_memory_saving(
            blocks, (stream[..., :1], stream[..., 1:]), [None] * 3)
    sum(p.sum() for p in pair).backward()
    for block in blocks:
        for variable in block.trainable_weights:
            assert variable.value.grad is not None, variable.path
            assert variable.value.grad.dtype == torch.float32


def test_unbuilt_blocks_are_an_error():
    with pytest.raises(ValueError, match="build the blocks first"):
        torch_gradient.run_memory_saving([ToyBlock(8)], (torch.zeros(1), torch.zeros(1)),
                                         [None])


def test_seed_count_must_match():
    with pytest.raises(ValueError, match="one dropout seed"):
        torch_gradient.run_memory_saving(toy_blocks(), (torch.zeros(1), torch.zeros(1)),
                                         [None])


# --- the real IRevNet -------------------------------------------------------------------

# After an initial psi: a stride-1 block, then a stride-2 block. mult=2 (bottleneck widths 3
# and 12): with mult=4 stage 1's width-1 convolutions hit a PyTorch bug in float64 (torch
# 2.13 CPU: the backward of a channels-last conv2d whose kernel, a permuted HWIO view as
# Keras passes it, has one output channel raises "slow_conv2d: grad_weight must be
# contiguous", in plain autodiff too).
SMALL = dict(blocks=(1, 1), strides=(1, 2), channels=(6, 24), init_ds=2, mult=2,
             input_shape=(16, 16, 3), num_classes=5)
# Stage 1: a stride-1 injective block (3 image channels split 1 + 2, padded to 8 + 8),
# a bijective stride-1 block; stage 2: a stride-2 block.
INJECTIVE = dict(blocks=(2, 1), strides=(1, 2), channels=(8, 32), init_ds=0,
                 input_shape=(8, 8, 3), num_classes=5)
CONFIGS = {"small": SMALL, "injective": INJECTIVE}
TOLERANCES = {"float64": FLOAT64_TOLERANCE, "float32": FLOAT32_TOLERANCE,
              "mixed_bfloat16": FLOAT32_TOLERANCE}


def build_pair(kind="small", dtype="float64", dropout_rate=0.2, randomize=True):
    """The same network twice, reversible and plain, with identical weights."""
    config = CONFIGS[kind]
    kwargs = dict(config, dropout_rate=dropout_rate, seed=5, dtype=dtype)
    reversible = IRevNet(reversible=True, **kwargs)
    if randomize:
        randomize_batch_norms(reversible, seed=1, shift_std=0.5)
    plain = IRevNet(reversible=False, **kwargs)
    plain.set_weights(reversible.get_weights())
    return reversible, plain


def batch(kind="small", dtype="float64", size=BATCH, seed=0):
    rng = np.random.default_rng(seed)
    config = CONFIGS[kind]
    images = torch.tensor(rng.standard_normal((size, *config["input_shape"])).astype(dtype))
    labels = torch.tensor(rng.integers(0, config["num_classes"], size))
    return images, labels


def loss_and_gradients(model, images, labels, dropout_seed=SEED):
    """Loss and d loss / d (images, *trainable variables)."""
    images = images.detach().requires_grad_(True)
    seed = None if dropout_seed is None else torch.tensor(dropout_seed, dtype=torch.int32)
    logits = model(images, training=True, dropout_seed=seed)
    loss = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True).mean()
    weights = [v.value for v in model.trainable_variables]
    return loss.detach(), torch.autograd.grad(loss, [images] + weights)


def names(model):
    return ["images"] + [v.path for v in model.trainable_variables]


@pytest.mark.parametrize("kind,dtype", [("small", "float64"), ("injective", "float64"),
                                        ("small", "float32"), ("small", "mixed_bfloat16"),
                                        ("injective", "mixed_bfloat16")])
def test_gradients_equal_plain_autodiff(kind, dtype):
    reversible, plain = build_pair(kind, dtype)
    images, labels = batch(kind, "float64" if dtype == "float64" else "float32")
    loss_rev, grads_rev = loss_and_gradients(reversible, images, labels)
    loss_plain, grads_plain = loss_and_gradients(plain, images, labels)
    assert abs(float(loss_rev) - float(loss_plain)) <= TOLERANCES[dtype] * abs(float(loss_plain))
    assert_gradients_close(grads_rev, grads_plain, names(reversible), TOLERANCES[dtype])


def test_fresh_injective_model_gradients_equal_plain_autodiff_float64():
    """gamma 1, beta 0: the padded channels are exactly constant, so ReLUs sit exactly on
    their kink there, where any difference in a rebuilt pair would flip the backward."""
    reversible, plain = build_pair("injective", randomize=False)
    images, labels = batch("injective")
    _, grads_rev = loss_and_gradients(reversible, images, labels)
    _, grads_plain = loss_and_gradients(plain, images, labels)
    assert_gradients_close(grads_rev, grads_plain, names(reversible), FLOAT64_TOLERANCE)


def test_dropout_masks_matter_so_the_seed_test_can_fail():
    reversible, plain = build_pair()
    images, labels = batch()
    _, grads_rev = loss_and_gradients(reversible, images, labels, dropout_seed=(1, 2))
    _, grads_plain = loss_and_gradients(plain, images, labels, dropout_seed=(3, 4))
    errors = max_relative_errors(grads_rev, grads_plain, names(reversible))
    assert max(errors.values()) > 1e-3


def moving_statistics(model):
    return {v.path: v.value.detach().clone() for v in model.non_trainable_variables
            if v.path.endswith(("moving_mean", "moving_variance"))}


def test_moving_statistics_updated_once():
    reversible, plain = build_pair()
    images, labels = batch()
    before = moving_statistics(reversible)
    loss_and_gradients(reversible, images, labels)
    loss_and_gradients(plain, images, labels)
    after_rev, after_plain = moving_statistics(reversible), moving_statistics(plain)
    assert any(not torch.equal(after_rev[k], before[k]) for k in before)
    for key in before:
        torch.testing.assert_close(after_rev[key], after_plain[key], rtol=1e-12, atol=1e-12)


def test_the_stack_saves_only_its_output_pair():
    reversible, _ = build_pair(dropout_rate=0.0)
    images, _ = batch()
    outputs = reversible(images.requires_grad_(True), training=True)
    nodes, seen, todo = [], set(), [outputs.grad_fn]
    while todo:  # the graph's nodes, for the stack's
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if type(node).__name__ == "MemorySavingStackBackward":
            nodes.append(node)
        todo.extend(parent for parent, _ in node.next_functions)
    assert len(nodes) == 1
    saved = nodes[0].saved_tensors
    assert [(t.dtype, tuple(t.shape)) for t in saved] == [(torch.int32, (BATCH, 4, 4, 24))] * 2
    assert not [name for name, value in vars(nodes[0]).items() if torch.is_tensor(value)]


def test_activation_memory_is_flat_in_depth_for_reversible_and_grows_for_plain():
    """Peak bytes saved for backward over one gradient, at 4 and 8 blocks (both with stride-1
    blocks in each stage, so that the largest block is the same): flat for the reversible
    gradient, which holds the stack's output pair and one block's graph at a time."""
    images = torch.randn(BATCH, 16, 16, 3)
    labels = torch.randint(0, 5, (BATCH,))
    peaks = {}
    for depth in (4, 8):
        reversible = model_for_depth(depth, True)
        plain = model_for_depth(depth, False)
        plain.set_weights(reversible.get_weights())
        peaks[depth] = (gradient_peak_bytes(reversible, images, labels)[0],
                        gradient_peak_bytes(plain, images, labels)[0])
    (rev4, plain4), (rev8, plain8) = peaks[4], peaks[8]
    assert rev8 == rev4, peaks
    assert plain8 > 1.6 * plain4, peaks
    assert plain8 > 4 * rev8, peaks


def test_fit_trains():
    model = IRevNet(reversible=True, dropout_rate=0.1, seed=5, **SMALL)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    images = rng.standard_normal((32, 16, 16, 3)).astype("float32")
    labels = rng.integers(0, 5, 32)
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(images, labels, batch_size=8, epochs=3, verbose=0, shuffle=False)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0], losses
    changed = [not np.array_equal(a, b) for a, b in zip(before, model.get_weights())]
    assert all(changed[i] for i, v in enumerate(model.weights) if v.trainable)
