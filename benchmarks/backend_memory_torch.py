r"""Activation memory of one gradient on the PyTorch backend: reversible vs plain, by depth.

PyTorch's CPU allocator keeps no statistics, so this counts what autograd keeps for the
backward pass instead: every tensor saved for backward passes through
`torch.autograd.graph.saved_tensors_hooks`, which here records its storage's bytes while
the graph holds it (a storage shared by several saved tensors counts once; Parameters,
which live anyway, do not count). The peak of those live bytes over the forward pass and
the backward pass is the activation memory of one gradient. For the reversible gradient it
includes the stack's saved output pair and, during the backward pass, the graph of the one
block being rebuilt (its hooks run inside the same context, on the calling thread).

For each depth d the model is `IRevNet(blocks=(d/2, d/2), strides=(1, 2), channels=(6, 24),
init_ds=2)` on 16x16x3 images (`--image_size`, `--batch_size`), float32; one loss gradient
of every trainable weight and the images (`torch.autograd.grad`).

Example:
    KERAS_BACKEND=torch python benchmarks/backend_memory_torch.py --depths=2,4,8
"""

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "torch")


class SavedTensorMeter:
    """Live and peak bytes of the tensors autograd saves for backward, while active.

    Use as a context manager around the forward and the backward pass:
    >>> with SavedTensorMeter() as meter:
    ...     loss = model(images, training=True).sum()
    ...     torch.autograd.grad(loss, weights)
    >>> meter.peak   # bytes
    """

    def __init__(self):
        import torch

        self._torch = torch
        self._counts = {}  # storage address -> [bytes, number of saved tensors using it]
        self.live = 0
        self.peak = 0
        self.saved = 0  # bytes ever saved (a storage counted each time it is first saved)
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)

    def __enter__(self):
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc_info):
        return self._hooks.__exit__(*exc_info)

    def _pack(self, tensor):
        if isinstance(tensor, self._torch.nn.Parameter):
            return tensor
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        entry = self._counts.get(key)
        if entry is None:
            entry = self._counts[key] = [storage.nbytes(), 0]
            self.live += entry[0]
            self.saved += entry[0]
            self.peak = max(self.peak, self.live)
        entry[1] += 1
        return _Saved(self, key, tensor)

    @staticmethod
    def _unpack(packed):
        return packed if not isinstance(packed, _Saved) else packed.tensor

    def _release(self, key):
        entry = self._counts[key]
        entry[1] -= 1
        if not entry[1]:
            self.live -= entry[0]
            del self._counts[key]


class _Saved:
    """A saved tensor; the graph holds it, and frees it (and so this) when it is freed."""

    __slots__ = ("meter", "key", "tensor")

    def __init__(self, meter, key, tensor):
        self.meter, self.key, self.tensor = meter, key, tensor

    def __del__(self):
        self.meter._release(self.key)


def model_for_depth(depth, reversible, image_size=16, dtype="float32", dropout_rate=0.0,
                    seed=5):
    """The benchmark's IRevNet with `depth` blocks (half per stage)."""
    from irevnet_tf.model import IRevNet

    if depth < 2 or depth % 2:
        raise ValueError(f"depth must be an even number >= 2, got {depth}")
    model = IRevNet(blocks=(depth // 2, depth // 2), strides=(1, 2), channels=(6, 24),
                    init_ds=2, input_shape=(image_size, image_size, 3), num_classes=5,
                    dropout_rate=dropout_rate, seed=seed, reversible=reversible, dtype=dtype)
    return model


def gradient_peak_bytes(model, images, labels):
    """(peak live bytes saved for backward, total bytes saved) over one loss gradient."""
    import keras
    import torch

    weights = [v.value for v in model.trainable_variables]
    images = images.detach().requires_grad_(True)
    with SavedTensorMeter() as meter:
        logits = model(images, training=True)
        loss = keras.losses.sparse_categorical_crossentropy(
            labels, logits, from_logits=True).mean()
        grads = torch.autograd.grad(loss, [images] + weights, allow_unused=True)
        del loss, logits
    if any(g is None for g in grads[1:]):
        raise RuntimeError("a weight got no gradient")
    return meter.peak, meter.saved


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", default="2,4,8")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--image_size", type=int, default=16)
    args = parser.parse_args(argv)

    import keras
    import torch

    if keras.backend.backend() != "torch":
        raise SystemExit("run with KERAS_BACKEND=torch")
    keras.utils.set_random_seed(0)
    images = torch.randn(args.batch_size, args.image_size, args.image_size, 3)
    labels = torch.randint(0, 5, (args.batch_size,))
    print(f"batch {args.batch_size}, {args.image_size}x{args.image_size}x3, float32; "
          f"bytes saved for backward (peak live / total saved)")
    print(f"{'depth':>5} {'reversible peak':>16} {'plain peak':>12} {'plain/rev':>9} "
          f"{'rev saved':>10} {'plain saved':>12}")
    for depth in (int(d) for d in args.depths.split(",")):
        reversible = model_for_depth(depth, True, args.image_size)
        plain = model_for_depth(depth, False, args.image_size)
        plain.set_weights(reversible.get_weights())
        rev_peak, rev_saved = gradient_peak_bytes(reversible, images, labels)
        plain_peak, plain_saved = gradient_peak_bytes(plain, images, labels)
        print(f"{depth:>5} {rev_peak:>16,} {plain_peak:>12,} {plain_peak / rev_peak:>9.2f} "
              f"{rev_saved:>10,} {plain_saved:>12,}")


if __name__ == "__main__":
    main()
