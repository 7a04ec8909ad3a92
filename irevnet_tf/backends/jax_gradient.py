"""The memory-saving (reversible) gradient of the invertible stack on the JAX backend.

`run_memory_saving(blocks, pair, seeds)` has the contract of the TensorFlow version
(`irevnet_tf.stack.run_memory_saving`, whose docstring explains the method): the stack runs
in training mode on the exact integer stream, only its output pair is kept, and the
gradient walks the blocks in reverse, rebuilding each block's input from its output with one
evaluation of F that also gives F's gradient.

What is particular to JAX:

- Keras 3 on JAX keeps weights in stateful `Variable` objects over functional JAX, and a
  `jax.custom_vjp` function must be pure. So the stack's variable *values* are explicit
  arguments of the custom-vjp function and are bound to the variables inside it with
  `keras.StatelessScope(state_mapping=...)`, in the forward and in every rebuild of F.
  Their cotangents are the weight gradients, so they reach whatever differentiates the
  caller: Keras' stateless `train_step` (`model.fit`), `model.stateless_call` under
  `jax.grad`, or a user's own loop.
- The batch norms' moving statistics, updated by the forward only, come out of the
  custom-vjp function as extra outputs (their cotangents are ignored) and are assigned by
  `run_memory_saving` with `variable.assign`, which Keras records in an enclosing
  stateless scope (`train_step`) or applies directly (eager calls).
- The custom-vjp boundary carries floats only, apart from the dropout seeds (whose
  cotangent is None, which JAX turns into float0 zeros): the pair comes in and goes out as
  floats on the grid, the int32 stream lives inside, and the residuals (the int32 output
  pair, the weights and the seeds) are no primal outputs.
- Ordering (the analogue of the TensorFlow version's `_wait_for`): before each block's
  rebuild, its output pair goes through `jax.lax.optimization_barrier` together with the
  gradients of that pair, as `jax.checkpoint` does. Under `jax.jit` this stops XLA from
  merging a rebuild of F with the forward's F on the same bits (common-subexpression
  elimination would keep the forward's activations alive, for a stride-1 block whose
  rebuilt x2 is the forward's x2 itself) and from running the rebuilds ahead of the
  backward (every rebuild depends only on the next one). XLA's CPU scheduler happens to
  keep the order without it (irevnet_small, batch 16: the same temporaries with and
  without); the barrier costs nothing and binds every XLA backend's scheduler.

Memory (benchmarks/backend_memory_jax.py: XLA's memory analysis of the compiled gradient of
irevnet_small, batch 16, CPU): temporaries 22.5 MiB at 6 blocks and 17.0 MiB at 24 blocks
with this gradient, 25.5 MiB and 79.5 MiB with plain autodiff.

Dropout: a block with dropout needs its seed (the model passes one per block); without
one, F would draw a new mask in the rebuild and the gradient would be wrong, so that is
an error here.
"""

import jax
import keras

from irevnet_tf.layers.fixed_point import checks_disabled

try:  # Private: how to read a variable's stored value without the caller's autocast.
    from keras.src.backend.common.variables import AutocastScope as _AutocastScope
except ImportError:  # pragma: no cover - other layouts
    _AutocastScope = None


def _dtype(value):
    return keras.backend.standardize_dtype(value.dtype)


def _is_float(value):
    return "float" in _dtype(value)


def _stored_value(variable):
    """The variable's value in its own dtype: the enclosing stateless scope's (`train_step`)
    or the stored one. `variable.value` inside a mixed-precision layer's call would be cast
    to the compute dtype, and the weights must enter the custom-vjp function unrounded."""
    if _AutocastScope is None:  # pragma: no cover
        return keras.ops.cast(variable.value, variable.dtype)
    with _AutocastScope(None):
        return variable.value


def _has_dropout(block):
    return (getattr(block, "dropout_rate", 0) or 0) > 0


def run_memory_saving(blocks, pair, seeds):
    """The stack in training mode with the memory-saving gradient (JAX backend).

    Args:
        blocks: built i-RevBlocks (anything with the coupling methods of `IRevBlock`:
            `grid`, `second_input`, `residual`, `first_input`, `unpad`, `psi.inverse`).
        pair: two float arrays on the blocks' grid (`FixedPoint.quantize_straight_through`).
        seeds: one dropout seed (or None) per block.

    Returns:
        The output pair, dequantised to the dtype of `pair`, whose gradient is the
        memory-saving one. The batch norms' moving statistics are updated once.
    """
    blocks = list(blocks)
    seeds = list(seeds)
    if len(seeds) != len(blocks):
        raise ValueError(f"run_memory_saving: need one dropout seed (or None) per block, got "
                         f"{len(seeds)} seeds for {len(blocks)} blocks.")
    for block, seed in zip(blocks, seeds):
        if seed is None and _has_dropout(block):
            raise ValueError(
                f"run_memory_saving: {block.name} has dropout but no dropout seed; the "
                f"rebuild of F in the backward pass needs the forward's mask (pass one seed "
                f"per block, as IRevNet.encode does).")
    grid = blocks[0].grid
    float_dtype = _dtype(pair[0])
    trainable = [list(block.trainable_variables) for block in blocks]
    non_trainable = [list(block.non_trainable_variables) for block in blocks]
    # The floating-point non-trainable variables (the batch norms' moving statistics) are
    # the ones the forward may update; integer ones (seed-generator states) must not change.
    updated = [[v for v in variables if "float" in keras.backend.standardize_dtype(v.dtype)]
               for variables in non_trainable]
    updated_ids = [{id(v) for v in variables} for variables in updated]

    def mapping(block_index, trainable_values, non_trainable_values):
        return (list(zip(trainable[block_index], trainable_values))
                + list(zip(non_trainable[block_index], non_trainable_values)))

    def forward(trainable_values, non_trainable_values, seeds, x1, x2):
        """The integer output pair and the new values of the updated variables."""
        state = [item for index in range(len(blocks)) for item in
                 mapping(index, trainable_values[index], non_trainable_values[index])]
        with checks_disabled(), keras.StatelessScope(state_mapping=state) as scope:
            fixed = [(index, v, scope.get_current_value(v))
                     for index, variables in enumerate(non_trainable) for v in variables
                     if id(v) not in updated_ids[index]]
            stream = (grid.quantize(x1, "run_memory_saving", "x1"),
                      grid.quantize(x2, "run_memory_saving", "x2"))
            for block, seed in zip(blocks, seeds):
                stream = tuple(block(stream, training=True, dropout_seed=seed))
        for index, variable, value in fixed:
            if scope.get_current_value(variable) is not value:
                raise RuntimeError(
                    f"run_memory_saving: the forward pass of {blocks[index].name} changed "
                    f"the non-float variable {variable.path} (a seed generator?), which "
                    f"the backward pass could not repeat.")
        new_values = [[scope.get_current_value(v) for v in variables]
                      for variables in updated]
        return stream, new_values

    def dequantized(stream):
        return tuple(grid.dequantize(t, float_dtype) for t in stream)

    @jax.custom_vjp
    def stack(trainable_values, non_trainable_values, seeds, x1, x2):
        stream, new_values = forward(trainable_values, non_trainable_values, seeds, x1, x2)
        return dequantized(stream), new_values

    def stack_forward(trainable_values, non_trainable_values, seeds, x1, x2):
        stream, new_values = forward(trainable_values, non_trainable_values, seeds, x1, x2)
        # Only the stack's output pair is kept (with the weights and the seeds, which the
        # caller holds anyway); every activation is rebuilt in the backward pass.
        residuals = (stream, trainable_values, non_trainable_values, seeds)
        return (dequantized(stream), new_values), residuals

    def stack_backward(residuals, cotangents):
        stream, trainable_values, non_trainable_values, seeds = residuals
        (grad_a, grad_b), _ = cotangents  # The updated statistics get no gradient.
        with checks_disabled():  # As in the forward: non-finite values reach the loss.
            pair, pair_grads = stream, (grad_a, grad_b)
            weight_grads = [None] * len(blocks)
            for index in reversed(range(len(blocks))):
                pair, pair_grads = jax.lax.optimization_barrier((pair, pair_grads))
                pair, pair_grads, weight_grads[index] = _block_backward(
                    blocks[index], pair, pair_grads, seeds[index],
                    mapping=lambda values, i=index: mapping(
                        i, values, non_trainable_values[i]),
                    trainable_values=trainable_values[index])
        input_grads = tuple(keras.ops.cast(g, float_dtype) for g in pair_grads)
        return (weight_grads, None, None) + input_grads

    stack.defvjp(stack_forward, stack_backward)

    trainable_values = [[_stored_value(v) for v in variables] for variables in trainable]
    non_trainable_values = [[_stored_value(v) for v in variables] for variables in non_trainable]
    outputs, new_values = stack(trainable_values, non_trainable_values, seeds, *pair)
    for variables, values in zip(updated, new_values):
        for variable, value in zip(variables, values):
            variable.assign(value)
    return outputs


def _block_backward(block, outputs, output_grads, seed, mapping, trainable_values):
    """One block of the reversible backward pass (see `irevnet_tf.stack.block_backward`).

    Args:
        block: a built i-RevBlock.
        outputs: the integer pair `(y2, y1)` the block produced in the training-mode forward.
        output_grads: the loss gradients `(dL/dy2, dL/dy1)` (floats, per real unit).
        seed: the dropout seed the forward used (or None without dropout).
        mapping: `mapping(trainable_values)`: the block's stateless-scope state for them.
        trainable_values: the values of `block.trainable_variables`.

    Returns:
        `(inputs, input_grads, weight_grads)`: the rebuilt integer pair `(x1, x2)` (bit
        for bit the forward's), the loss gradients with respect to it, and the gradients of
        the block's trainable variables (a list in the order of `trainable_values`).
    """
    y2, y1 = outputs
    grad_y2, grad_y1 = output_grads
    with keras.StatelessScope(state_mapping=mapping(trainable_values)):
        x2 = block.second_input(y2)
        x2_float = block.grid.dequantize(x2, block.compute_dtype)

    def residual(x2_float, values):
        with keras.StatelessScope(state_mapping=mapping(values)):
            # F in grid units (F * 2**k), as the forward's integer stream computed it.
            return block.residual(x2_float, training=True, dropout_seed=seed,
                                  update_statistics=False, grid_units=True)

    fx2, pullback = jax.vjp(residual, x2_float, list(trainable_values))
    with keras.StatelessScope(state_mapping=mapping(trainable_values)):
        inputs = tuple(block.unpad((block.first_input(y1, fx2), x2)))
        # The rounding onto the grid has the straight-through gradient 1 in real units, so
        # d y1 / d (F * 2**k) = 2**-k (a power of two: exact).
        grad_fx2 = keras.ops.cast(grad_y1 * block.grid.step, _dtype(fx2))
        grad_x2_through_f, weight_grads = pullback(grad_fx2)
        # psi permutes values, so its adjoint is psi^-1; zero padding's adjoint drops the
        # padded channels, as its inverse does.
        grad_x1 = block.psi.inverse(grad_y1)
        grad_x2 = block.psi.inverse(grad_y2) + keras.ops.cast(grad_x2_through_f,
                                                              _dtype(grad_y2))
        input_grads = tuple(block.unpad((grad_x1, grad_x2)))
    return inputs, input_grads, list(weight_grads)
