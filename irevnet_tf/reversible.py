"""The memory-saving gradient: rebuild each block's input from its output instead of storing it.

`reversible_stack(blocks, pair, seeds)` runs the invertible stack in training mode inside a
`tf.custom_gradient`. The forward pass runs with gradient recording stopped, so no tape (eager
or graph) keeps the blocks' activations; only the stack's output pair survives. The gradient
then walks the blocks in reverse. For a block `y2 = psi(x2)`, `y1 = F(x2) + psi(x1)` it
rebuilds `x2 = psi^-1(y2)`, computes `F(x2)` once under a tape (training mode, same batch, so
the same batch statistics, and the same dropout seed), and uses that one evaluation twice:
to rebuild `x1 = psi^-1(y1 - F(x2))` and to backpropagate through F. The rest of the block
is linear and is backpropagated by hand: psi only permutes values, so its adjoint is its
inverse, and the adjoint of zero-padding channels is dropping them. A block thus costs one
forward of F in the backward pass, not two (rebuild, then recompute), which is the
textbook +33 % compute of reversible networks. Gradients are the same formulas as plain
autodiff, up to the rounding of the reconstruction.

Because it is a custom gradient, every consumer gets it: `model.fit` (through Keras'
`train_step`), the trainer's own loop and any user's `tf.GradientTape`.

Details that make it correct and actually save memory:
- Batch-norm moving statistics are updated only by the forward pass; the backward
  evaluations of F use batch statistics with `update_statistics=False`.
- In graph mode the executor would otherwise be free to rebuild all blocks early (every
  rebuild depends only on the next rebuild), holding every activation again; each block's
  rebuild therefore waits (control dependency) for the gradients of the later block's
  inputs, so at most two blocks' activations are alive at a time (the later block's
  weight gradients may still be in progress). XLA ignores control dependencies; when
  compiling with XLA (jit_compile=True, TPUs) the rebuild gets a data dependency on the
  later block's input gradients instead (adding an exact zero computed from them).
- Besides the output pair, the stack keeps a few pairs exactly and uses them instead of
  rebuilding: its input, the input of every down-sampling block (the stage boundaries)
  and the output of every injective block. Each is the size of one block's input (for a
  bijective model, of the image batch), and their number does not grow with depth. They
  stop the rebuild's rounding from accumulating over the whole network: on irevnet301
  (64x64, random batch-norm parameters) the float32 gradient was 4e-4 off float64 when
  rebuilt from the top, 5.4e-6 with the stage boundaries kept (plain autodiff: 4.7e-6).
  And injective padding makes channels exactly constant, which the next block's batch
  norm divides by about sqrt(epsilon) (x300) while its ReLUs sit exactly on their kink:
  a rebuilt pair there carries rounding noise instead of the constant, which made a fresh
  injective model's float32 gradient 6 % off float64 where plain autodiff was within 1e-6.
- Gradients are exact formulas, but ReLU's derivative at exactly 0 is a convention:
  wherever a pre-activation is exactly 0 in the forward and a rebuilt one is not (or the
  other way round), reversible and plain gradients legitimately differ. Batch norms with
  random gamma/beta, as in trained models, leave no such exact ties outside the kept pairs.
"""

import tensorflow as tf

try:  # Private, but the only way to stop an outer tape that this code does not own.
    from tensorflow.python.eager import record as _record
except ImportError:  # pragma: no cover - older layouts
    from tensorflow.python.eager import tape as _record

try:  # Private too, and stable since TF 2.0: whether XLA compiles the graph being built.
    from tensorflow.python.ops import control_flow_util as _control_flow_util
except ImportError:  # pragma: no cover
    _control_flow_util = None


def _compiling_with_xla():
    """True while tracing a function that XLA compiles (jit_compile=True, TPUs)."""
    if _control_flow_util is None or tf.executing_eagerly():
        return False
    return bool(_control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))


def _wait_for(tensors, later_grads):
    """`tensors` plus an exact zero computed from `later_grads`: XLA's ordering constraint.

    XLA ignores control dependencies, and its scheduler (and its common-subexpression
    elimination, which would merge the backward's F with the forward's on kept pairs)
    then keeps many blocks' activations alive at once. A data dependency binds every
    compiler: `0 * sum(g)` is not folded for floats, as `0 * inf` is NaN. So a non-finite
    gradient makes the rebuild NaN too, and all gradients; a step whose gradients are
    already not finite (skipped by a loss-scale optimizer) stays skipped.
    """
    zero = tf.add_n([tf.reduce_sum(tf.cast(g, tf.float32)) for g in later_grads]) * 0.0
    return tuple(t + tf.cast(zero, t.dtype) for t in tensors)


def block_dropout_seeds(base_seed, num_blocks):
    """Per-block stateless seeds derived from one `[2]` seed, or Nones without a seed."""
    if base_seed is None:
        return [None] * num_blocks
    base_seed = tf.cast(base_seed, tf.int32)
    return [tf.random.experimental.stateless_fold_in(base_seed, index)
            for index in range(num_blocks)]


def plain_stack(blocks, pair, seeds, training):
    """The stack with ordinary autodiff: every activation is kept for the backward pass."""
    for block, seed in zip(blocks, seeds):
        pair = block(pair, training=training, dropout_seed=seed)
    return pair


def reversible_stack(blocks, pair, seeds):
    """The stack in training mode with the memory-saving gradient; returns the output pair."""
    blocks = list(blocks)
    if len(seeds) != len(blocks):
        raise ValueError(f"reversible_stack: need one dropout seed (or None) per block, got "
                         f"{len(seeds)} seeds for {len(blocks)} blocks.")

    @tf.custom_gradient
    def stack(x1, x2):
        # Pairs kept exactly (see the module docstring), by the index of the block they
        # feed: the stack's input, the input of every down-sampling block (the stages'
        # boundaries) and the output of every injective block.
        exact_inputs = {}
        with _record.stop_recording():
            pair = (x1, x2)
            for index, (block, seed) in enumerate(zip(blocks, seeds)):
                if index == 0 or block.stride > 1 or blocks[index - 1].pad:
                    exact_inputs[index] = pair
                pair = tuple(block(pair, training=True, dropout_seed=seed))
            outputs = pair

        def gradient(grad_a, grad_b, variables=None):
            variables = list(variables or [])
            wanted = {v.ref() for v in variables}
            variable_grads = {}
            pair = outputs
            pair_grads = tuple(tf.zeros_like(t) if g is None else g
                               for t, g in zip(outputs, (grad_a, grad_b)))
            later_grads = []
            in_xla = _compiling_with_xla()
            for index in reversed(range(len(blocks))):
                inputs = exact_inputs.get(index)
                if in_xla and later_grads:
                    pair = _wait_for(pair, later_grads)
                    inputs = None if inputs is None else _wait_for(inputs, later_grads)
                pair, pair_grads, block_grads = block_backward(
                    blocks[index], pair, pair_grads, seeds[index], variables=wanted,
                    after=later_grads, inputs=inputs)
                variable_grads.update(block_grads)
                # Only the input gradients: the later block's weight gradients may still
                # be computed while this block is rebuilt (4 % faster on irevnet301, same
                # peak memory).
                later_grads = list(pair_grads)
            return list(pair_grads), [variable_grads.get(v.ref()) for v in variables]

        return outputs, gradient

    return stack(*pair)


def block_backward(block, outputs, output_grads, seed=None, variables=None, after=(),
                   inputs=None):
    """One block of the reversible backward pass.

    Args:
        block: a built `IRevBlock`.
        outputs: the pair `(y2, y1)` the block produced in the training-mode forward.
        output_grads: the loss gradients `(dL/dy2, dL/dy1)`.
        seed: the dropout seed the forward used (or None without dropout).
        variables: refs (`v.ref()`) of the TensorFlow variables to return gradients for,
            or None for every variable the block reads.
        after: tensors the rebuild must wait for in graph mode (the gradients of the
            later block's inputs), so that the rebuilds cannot run ahead of the backward.
        inputs: the block's input pair if it was kept, used instead of a rebuild.

    Returns:
        `(inputs, input_grads, variable_grads)`: the rebuilt (or given) pair `(x1, x2)`,
        the loss gradients with respect to it, and a dict from variable ref to gradient.
    """
    y2, y1 = outputs
    grad_y2, grad_y1 = output_grads
    with tf.control_dependencies(list(after)):
        if inputs is None:
            x2 = block.psi.inverse(y2)
            if block.pad:
                # The same projection as IRevBlock.inverse: the padded channels are exactly 0.
                x2 = block._project_onto_padding(x2)  # pylint: disable=protected-access
        else:
            x1, x2 = inputs
            if block.pad:  # As IRevBlock.call does.
                merged = block.injective_pad(tf.concat([x1, x2], axis=-1))
                x1, x2 = merged[..., :block.out_channels], merged[..., block.out_channels:]
        with tf.GradientTape() as tape:
            tape.watch(x2)
            fx2 = block.bottleneck(x2, training=True, dropout_seed=seed,
                                   update_statistics=False)
            fx2 = tf.cast(fx2, y1.dtype)
    if inputs is None:
        x1 = block.psi.inverse(y1 - fx2)

    watched = tape.watched_variables()
    if variables is None:
        variables = {v.ref() for v in watched}
    missing = [v.name for v in watched if v.trainable and v.ref() not in variables]
    if missing:
        # tf.custom_gradient reports every variable the forward read; if a TensorFlow
        # version stopped doing so, the gradients would silently be None.
        raise RuntimeError(
            f"reversible_stack: tf.custom_gradient did not report the variables {missing} "
            f"of {block.name}, so their gradients would be lost; build the model with "
            f"reversible=False.")
    block_variables = [v for v in watched if v.ref() in variables]
    grads = tape.gradient(fx2, [x2] + block_variables, output_gradients=grad_y1)
    grad_x2_through_f, variable_grads = grads[0], grads[1:]

    # psi permutes values, so its adjoint is psi^-1.
    grad_x1 = block.psi.inverse(grad_y1)
    grad_x2 = block.psi.inverse(grad_y2) + grad_x2_through_f
    if block.pad:
        # Zero padding's adjoint drops the padded channels, as its inverse does.
        c1 = block.input_halves[0]
        merged_grad = block.injective_pad.inverse(tf.concat([grad_x1, grad_x2], axis=-1))
        grad_x1, grad_x2 = merged_grad[..., :c1], merged_grad[..., c1:]
        if inputs is None:
            merged = block.injective_pad.inverse(tf.concat([x1, x2], axis=-1))
            x1, x2 = merged[..., :c1], merged[..., c1:]
    if inputs is not None:
        x1, x2 = inputs
    return ((x1, x2), (grad_x1, grad_x2),
            {v.ref(): g for v, g in zip(block_variables, variable_grads)})
