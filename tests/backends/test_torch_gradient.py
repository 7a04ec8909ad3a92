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


def test_unbuilt_blocks_are_an_error():
    with pytest.raises(ValueError, match="build the blocks first"):
        torch_gradient.run_memory_saving([ToyBlock(8)], (torch.zeros(1), torch.zeros(1)),
                                         [None])


def test_seed_count_must_match():
    with pytest.raises(ValueError, match="one dropout seed"):
        torch_gradient.run_memory_saving(toy_blocks(), (torch.zeros(1), torch.zeros(1)),
                                         [None])
