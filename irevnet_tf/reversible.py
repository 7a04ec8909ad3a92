"""The memory-saving gradient: rebuild each block's input from its output instead of storing it.

`reversible_stack(blocks, pair, seeds)` runs the invertible stack in training mode inside a
`tf.custom_gradient`. The forward pass runs with gradient recording stopped, so no tape (eager
or graph) keeps the blocks' activations; only the stack's output pair survives. The gradient
then walks the blocks in reverse: rebuild the block's input with `IRevBlock.inverse` (training
mode, same batch, same dropout seed), recompute that one block under a tape, and pass the
gradients on. Gradients are exact (the same formulas as plain autodiff), up to the rounding of
the reconstruction.

Because it is a custom gradient, every consumer gets it: `model.fit` (through Keras'
`train_step`), the trainer's own loop and any user's `tf.GradientTape`.

Two details make it correct and actually save memory:
- Batch-norm moving statistics are updated only by the forward pass; the inverse and the
  recomputation use batch statistics with `update_statistics=False`.
- In graph mode the executor would otherwise be free to rebuild all blocks early (every
  inverse depends only on the next inverse), holding every activation again; each block's
  rebuild therefore waits (control dependency) for the previous block's gradients.
"""

import tensorflow as tf

try:  # Private, but the only way to stop an outer tape that this code does not own.
    from tensorflow.python.eager import record as _record
except ImportError:  # pragma: no cover - older layouts
    from tensorflow.python.eager import tape as _record


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

    @tf.custom_gradient
    def stack(x1, x2):
        with _record.stop_recording():
            outputs = tuple(plain_stack(blocks, (x1, x2), seeds, training=True))

        def gradient(grad_a, grad_b, variables=None):
            variable_grads = {}
            output_grads = (grad_a, grad_b)
            block_outputs = outputs
            previous_grads = []
            for block, seed in zip(reversed(blocks), reversed(seeds)):
                # Rebuild this block's input only once the later block's gradients exist,
                # so that at most one block's activations are alive at a time.
                with tf.control_dependencies(previous_grads):
                    block_inputs = [tf.stop_gradient(t) for t in
                                    block.inverse(block_outputs, training=True,
                                                  dropout_seed=seed)]
                with tf.GradientTape() as tape:
                    tape.watch(block_inputs)
                    recomputed = block(block_inputs, training=True, dropout_seed=seed,
                                       update_statistics=False)
                watched = [v for v in tape.watched_variables() if v.trainable]
                grads = tape.gradient(list(recomputed), block_inputs + watched,
                                      output_gradients=list(output_grads))
                input_grads, weight_grads = grads[:2], grads[2:]
                for variable, grad in zip(watched, weight_grads):
                    if grad is not None:
                        variable_grads[variable.ref()] = grad
                output_grads = tuple(input_grads)
                previous_grads = [g for g in grads if g is not None]
                block_outputs = block_inputs
            return list(output_grads), [variable_grads.get(v.ref()) for v in variables or []]

        return outputs, gradient

    return stack(*pair)
