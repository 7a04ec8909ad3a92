"""PyTorch's forms of the backend-specific operations (see `irevnet_tf.backends`).

PyTorch runs eagerly, so the exact stream's checks are plain Python checks (inside
`torch.compile` they cause a graph break, which is correct and rare: one per coupling), and
inference runs under `torch.no_grad()`. Dropout masks come from a `torch.Generator`
seeded from the [2] seed, so the memory-saving gradient's recomputation draws the same mask.
"""

import weakref

import torch

from irevnet_tf.backends.portable_ops import (ASSERTION_ERRORS, GRAPH_ASSERTIONS,  # noqa: F401
                                              checked, depth_to_space, fused_batch_norm,
                                              in_chunks, space_to_depth, with_static_channels)


def dense(tensor):
    """`tensor` as a contiguous NHWC tensor. Keras' PyTorch convolution returns the NCHW
    result permuted to NHWC, a strided view; every element-wise op after it (batch norm,
    ReLU, the stream's rounding and sums) then ran 3-4x slower than on dense memory. One
    copy per convolution made irevnet_cifar's encode 7.3x faster (CPU time, batch 16:
    9.9 s -> 1.36 s)."""
    return tensor.contiguous()

_GOLDEN = 0x9E3779B9  # Spreads consecutive block indices over the seed space.


def can_check(values=None):
    return True


def is_concrete(tensor):
    return True


def _seed_int(seed):
    values = [int(v) for v in torch.as_tensor(seed).reshape(-1).tolist()]
    return ((values[0] & 0xFFFFFFFF) << 32 | (values[1] & 0xFFFFFFFF)) & ((1 << 63) - 1)


def stateless_dropout(x, rate, seed):
    """Dropout whose mask is a function of `seed` (a [2] int tensor) alone."""
    generator = torch.Generator(device=x.device)
    generator.manual_seed(_seed_int(seed))
    keep = torch.rand(x.shape, generator=generator, device=x.device) >= rate
    return torch.where(keep, x / (1.0 - rate), torch.zeros_like(x))


def fold_in(seed, index):
    seed = torch.as_tensor(seed, dtype=torch.int64).reshape(-1)
    return torch.stack([seed[0], (seed[1] + (index + 1) * _GOLDEN) % (1 << 32)])


def compile_inference(model, method):
    """`model.<method>` without gradient recording (eager PyTorch)."""
    owner = weakref.ref(model)

    def run(tensor):
        with torch.no_grad():
            return getattr(owner(), method)(tensor)

    return run
