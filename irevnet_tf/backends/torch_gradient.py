"""The memory-saving (reversible) gradient of the invertible stack on the PyTorch backend.

The PyTorch counterpart of `irevnet_tf.stack.run_memory_saving` (read its docstring for the
method): a `torch.autograd.Function` runs the stack in training mode on the exact integer
stream with autograd off, so no graph keeps the blocks' activations; it saves only the
stack's output pair (int32 grid points) for the backward pass. The backward pass walks the
blocks in reverse: for a block `y2 = psi(x2)`, `y1 = psi(x1) + [F(x2)]` it rebuilds
`x2 = psi^-1(y2)`, evaluates `F(x2)` once with autograd on (training mode, the same batch and
so the same batch statistics, the same dropout seed, moving statistics left alone), and uses
that one evaluation twice: to rebuild `x1 = psi^-1(y1 - [F(x2)])` bit for bit, and to
backpropagate through F. psi permutes values (adjoint = inverse) and the injective padding's
adjoint drops the padded channels, so the rest of the block is backpropagated by hand.

PyTorch specifics:
- The blocks' trainable weights (Keras variables, whose `.value` is a `torch.nn.Parameter`)
  are explicit inputs of the Function, so that its backward can return their gradients;
  autograd accumulates them into `.grad` (`loss.backward()`, as Keras' torch trainer does)
  or hands them to `torch.autograd.grad`.
- Each block's graph is freed (`torch.autograd.grad` without `retain_graph`) before the
  previous block is rebuilt: at most one block's activations are alive in the backward pass.
- The backward pass of a CPU graph runs on the calling thread; on GPUs the autograd engine
  runs it on the device's thread, which does not change anything here.
"""

import contextlib

import keras
import torch

# Private, but the only way to read a variable's own tensor inside a mixed-precision
# layer's autocast scope, and to find the stateless scope (`model.stateless_call`).
from keras.src.backend.common.stateless_scope import get_stateless_scope
from keras.src.backend.common.variables import AutocastScope

from irevnet_tf.layers.fixed_point import checks_disabled


def block_weights(block):
    """The block's trainable weights as the tensors that its ops read (not cast): the torch
    Parameters, or the values a `keras.StatelessScope` gives them."""
    with AutocastScope(None):
        return [variable.value for variable in block.trainable_weights]


class _Plan:
    """What the Function needs besides tensors: the blocks, their seeds and weight slots."""

    def __init__(self, blocks, seeds, float_dtype):
        self.blocks = blocks
        self.seeds = seeds
        self.float_dtype = float_dtype
        self.grid = blocks[0].grid
        # The backward pass must read the weights the forward read.
        self.stateless_scope = get_stateless_scope()
        self.weights = []  # every distinct Parameter, in order of first use
        self.slots = []    # per block: the indices of its weights in `self.weights`
        index_of = {}
        for block in blocks:
            slots = []
            for weight in block_weights(block):
                if id(weight) not in index_of:
                    index_of[id(weight)] = len(self.weights)
                    self.weights.append(weight)
                slots.append(index_of[id(weight)])
            self.slots.append(slots)


class MemorySavingStack(torch.autograd.Function):
    """`apply(plan, x1, x2, *weights)`: the stack's output pair, dequantised, with the
    memory-saving gradient for `x1`, `x2` and every weight (`plan.weights`)."""

    @staticmethod
    def forward(ctx, plan, x1, x2, *weights):
        grid = plan.grid
        with torch.no_grad(), checks_disabled():
            pair = (grid.quantize(x1, "run_memory_saving", "x1"),
                    grid.quantize(x2, "run_memory_saving", "x2"))
            for block, seed in zip(plan.blocks, plan.seeds):
                pair = tuple(block(pair, training=True, dropout_seed=seed))
            outputs = tuple(grid.dequantize(t, plan.float_dtype) for t in pair)
        ctx.plan = plan
        ctx.save_for_backward(*pair)  # int32 grid points: the only tensors kept
        return outputs

    @staticmethod
    def backward(ctx, grad_a, grad_b):
        plan = ctx.plan
        pair = tuple(ctx.saved_tensors)
        # An output the loss does not use has a zero gradient (materialised by autograd).
        pair_grads = (grad_a, grad_b)
        # The backward pass reads the weights the forward read: a caller's stateless scope.
        scope = plan.stateless_scope
        if scope is None or get_stateless_scope() is scope:
            scope = contextlib.nullcontext()
        # As in the forward: non-finite values reach the loss instead of raising.
        with checks_disabled(), scope:
            weight_grads = [None] * len(plan.weights)
            want_weights = any(ctx.needs_input_grad[3:])
            for index in reversed(range(len(plan.blocks))):
                block = plan.blocks[index]
                weights = ([plan.weights[slot] for slot in plan.slots[index]]
                           if want_weights else [])
                pair, pair_grads, grads = block_backward(
                    block, pair, pair_grads, plan.seeds[index], weights)
                for slot, grad in zip(plan.slots[index], grads):
                    if grad is None:
                        continue
                    weight_grads[slot] = (grad if weight_grads[slot] is None
                                          else weight_grads[slot] + grad)
        del pair
        return (None, *pair_grads, *weight_grads)


def block_backward(block, outputs, output_grads, seed=None, weights=()):
    """One block of the reversible backward pass (PyTorch).

    Args:
        block: a built `IRevBlock`.
        outputs: the integer pair `(y2, y1)` the block produced in the training forward.
        output_grads: the loss gradients `(dL/dy2, dL/dy1)` (floats, per real unit).
        seed: the dropout seed the forward used (or None without dropout).
        weights: the torch Parameters to return gradients for (of this block's weights).

    Returns:
        `(inputs, input_grads, weight_grads)`: the rebuilt integer pair `(x1, x2)` (bit for
        bit the forward's), the loss gradients with respect to it, and one gradient (or
        None, for a weight F does not use) per entry of `weights`.
    """
    y2, y1 = outputs
    grad_y2, grad_y1 = output_grads
    weights = list(weights)
    with torch.no_grad():
        x2 = block.second_input(y2)
        x2_float = block.grid.dequantize(x2, block.compute_dtype)
    x2_float = x2_float.detach().requires_grad_(True)
    with torch.enable_grad():
        # F in grid units (F * 2**k), as the forward's integer stream computed it.
        fx2 = block.residual(x2_float, training=True, dropout_seed=seed,
                             update_statistics=False, grid_units=True)
    with torch.no_grad():
        inputs = block.unpad((block.first_input(y1, fx2.detach()), x2))
    # The rounding onto the grid has the straight-through gradient 1 in real units, so
    # d y1 / d (F * 2**k) = 2**-k (a power of two: exact).
    grad_f = (grad_y1 * block.grid.step).to(fx2.dtype)
    grads = torch.autograd.grad(fx2, [x2_float] + weights, grad_outputs=grad_f,
                                allow_unused=True)  # frees the block's graph
    del fx2
    grad_x2_through_f, weight_grads = grads[0], list(grads[1:])
    with torch.no_grad():
        # psi permutes values, so its adjoint is psi^-1; zero padding's adjoint drops the
        # padded channels, as its inverse does.
        grad_x1 = block.psi.inverse(grad_y1)
        grad_x2 = block.psi.inverse(grad_y2)
        if grad_x2_through_f is not None:
            grad_x2 = grad_x2 + grad_x2_through_f.to(grad_x2.dtype)
        input_grads = tuple(block.unpad((grad_x1, grad_x2)))
    return inputs, input_grads, weight_grads


def run_memory_saving(blocks, pair, seeds):
    """The stack in training mode with the memory-saving gradient (PyTorch backend).

    `pair` holds floats on the blocks' grid (as `FixedPoint.quantize_straight_through`
    gives them); the stack runs on their integer grid points and returns the output pair
    dequantised to `pair`'s float dtype, with the gradient of the straight-through stream
    for the pair and for every trainable weight of the blocks.
    """
    blocks = list(blocks)
    if len(seeds) != len(blocks):
        raise ValueError(f"run_memory_saving: need one dropout seed (or None) per block, got "
                         f"{len(seeds)} seeds for {len(blocks)} blocks.")
    unbuilt = [block.name for block in blocks if not block.built]
    if unbuilt:
        # Their weights would not exist yet, so they would get no gradients.
        raise ValueError(f"run_memory_saving: build the blocks first; {unbuilt} are not built.")
    x1, x2 = pair
    plan = _Plan(blocks, list(seeds), keras.backend.standardize_dtype(x1.dtype))
    return MemorySavingStack.apply(plan, x1, x2, *plan.weights)
