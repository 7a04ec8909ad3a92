"""The invertible stack of i-RevBlocks and its two ways of running.

- `run(block_layers, pair, seeds, training)`: block after block with ordinary autodiff (every
  activation is kept for a backward pass); inference, and training with `reversible=False`.
- `run_memory_saving(block_layers, pair, seeds)`: training with the memory-saving gradient,
  which rebuilds each block's input from its output instead of storing it.

`run_memory_saving` runs the invertible stack in training mode inside the backend's own
custom gradient (`irevnet_tf.backends`: `tf.custom_gradient`, `jax.custom_vjp`,
`torch.autograd.Function`). The forward pass runs on the exact integer stream without
recording gradients, so nothing keeps the blocks' activations; only the stack's output
pair survives. The gradient then walks the blocks in reverse. For a block
`y2 = psi(x2)`, `y1 = psi(x1) + [F(x2)]` it rebuilds `x2 = psi^-1(y2)`, computes `F(x2)` once
under a tape (training mode, same batch, so the same batch statistics, and the same dropout
seed), and uses that one evaluation twice: to rebuild `x1 = psi^-1(y1 - [F(x2)])` and to
backpropagate through F. On the integer stream the rebuilt pair is the forward's pair bit
for bit, whatever precision F runs in, because F sees the same bits and gives the same
bits again; so the gradient is exactly the one plain autodiff computes on the same
stream (the rounding `[.]` has the straight-through gradient 1 in both). The rest of the
block is linear and is backpropagated by hand: psi only permutes values, so its adjoint is
its inverse, and the adjoint of zero-padding channels is dropping them. A block thus costs
one forward of F in the backward pass, not two (rebuild, then recompute), which is the
textbook +33 % compute of reversible networks.

Because it is a custom gradient, every consumer gets it: `model.fit` (through Keras'
`train_step`) on every backend, the trainer's own loop and any user's `tf.GradientTape`,
`jax.grad` or `loss.backward()`.

Details that make it correct and actually save memory:
- Batch-norm moving statistics are updated only by the forward pass; the backward
  evaluations of F use batch statistics with `update_statistics=False`.
- Each backend module makes sure the rebuilds cannot all run ahead of the backward
  (TensorFlow's executor and XLA would otherwise be free to), which would hold every
  activation again.
- Gradients are exact formulas, but ReLU's derivative at exactly 0 is a convention; the
  forward and the rebuild see identical pre-activations, so it is the same convention in
  both.
"""

from irevnet_tf import backends


def block_dropout_seeds(base_seed, num_blocks):
    """Per-block stateless seeds derived from one `[2]` seed, or Nones without a seed."""
    if base_seed is None:
        return [None] * num_blocks
    fold_in = backends.ops().fold_in
    return [fold_in(base_seed, index) for index in range(num_blocks)]


def run(block_layers, pair, seeds, training):
    """The stack with ordinary autodiff: every activation is kept for the backward pass."""
    for block, seed in zip(block_layers, seeds):
        pair = block(pair, training=training, dropout_seed=seed)
    return pair


def run_memory_saving(block_layers, pair, seeds):
    """The stack in training mode with the memory-saving gradient.

    `pair` holds floats on the blocks' grid (as `FixedPoint.quantize_straight_through`
    gives them); the stack runs on their integer grid points and returns the output pair
    dequantised to floats, with the gradient of the straight-through stream.
    """
    blocks = list(block_layers)
    if len(seeds) != len(blocks):
        raise ValueError(f"run_memory_saving: need one dropout seed (or None) per block, got "
                         f"{len(seeds)} seeds for {len(blocks)} blocks.")
    return backends.gradient().run_memory_saving(blocks, pair, seeds)

