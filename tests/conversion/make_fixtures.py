"""Writes the conversion tests' checkpoint fixtures with PyTorch, once; the tests need no torch.

Rerun (needs `pip install torch`, CPU build; run from the repository root):

    python -m tests.conversion.make_fixtures            # rewrites tests/conversion/data/*
    python -m tests.conversion.make_fixtures --check    # writes to a temporary directory
                                                        # and reports files whose content
                                                        # (values, for checkpoints) differs

and commit the files it writes under `tests/conversion/data/`. Rerun it only when a test
needs a new file: the committed files are the fixture, and torch.save's byte output may
change between torch versions, and for the legacy format between runs (its storages are
named after memory addresses); the tests check names and values, not bytes.

What it writes:

- `release_<arch>.pth`: reduced i-RevNets in the release's exact format. The release's
  model (jhjacobsen/pytorch-i-revnet `iRevNet`, written again below from the paper with the
  release's module names: `stack.K.bottleneck_block.I`, `bn1`, `linear`) is wrapped in
  `nn.DataParallel` (the `module.` prefix) and saved as the release saved it:
  `torch.save({"epoch", "arch", "best_prec1", "state_dict", "optimizer"}, path)`. Weights
  come from `release_reference.random_state_dict(seed)` (numpy), loaded with
  `load_state_dict(strict=True)`, so the torch model also checks the reference's names.
- `release_<arch>_reference.npz`: fixed input images, and the release's Phi (NHWC) and
  logits computed by the torch model in eval mode in float64 (and its float32 logits); a
  digest of the numpy state, so a test that regenerates the state from its seed knows it
  has the same numbers.
- layout variants (bare state_dicts, legacy/zip formats), refusal cases (names and
  shapes only: each tensor is a stride-0 view of one element, which torch.save stores as
  that one element, so a 1000x2048 entry costs 4 bytes), the full irevnet301 listing (all
  1,802 entries as strided views of one shared random storage, about 1 MB instead of
  500 MB) and the reader's fixtures (every tensor kind, module state_dicts with
  `_metadata`, files to truncate).

Every file is then read back with `torch.load(weights_only=True)` and with the torch-free
reader, which must agree exactly (this replaces the test of `reader="torch"`).
"""

import argparse
import collections
import hashlib
import json
import os
import shutil
import sys
import tempfile

import numpy as np

from tests.conversion import release_reference as ref

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")

# Reduced architectures in the release's naming scheme (see release_reference.Architecture).
# ImageNet-style: init_ds 2 and stride-2 stages as the release, a stride-1 block in each.
IMAGENET_LIKE = ref.Architecture(blocks=(2, 2), strides=(2, 2), channels=(24, 96),
                                 num_classes=10, image_size=16)
# CIFAR-style: no initial psi, injective first block (3 channels padded), dropout.
CIFAR_LIKE = ref.Architecture(blocks=(2, 1), strides=(1, 2), channels=(16, 64), init_ds=0,
                              num_classes=10, image_size=16)
# irevnet_tiny in the release's scheme (the CLI tests convert with --config=irevnet_tiny).
TINY = ref.Architecture(blocks=(1, 1, 1), strides=(1, 2, 2), channels=(6, 24, 96), mult=2,
                        num_classes=10, image_size=32)
ARCHITECTURES = {"imagenet_like": IMAGENET_LIKE, "cifar_like": CIFAR_LIKE, "tiny": TINY}
# Dropout in the CIFAR-like blocks (identity in eval mode, but the layer keeps its index).
DROPOUT = {"cifar_like": 0.1}
# A CIFAR i-RevNet of 54 blocks: converting it into IMAGENET_LIKE is "another architecture".
CIFAR54 = ref.Architecture(blocks=(18, 18, 18), strides=(1, 2, 2), channels=(16, 64, 256),
                           init_ds=0, num_classes=10, image_size=32)
REFERENCE_IMAGES = 2
# The full listing's tensors are views of one storage of this many float32 values.
SHARED_STORAGE = 1 << 14
# Strides (in elements) of the full listing's views per rank: all different, so a
# transposed or swapped axis reads other values.
VIEW_STRIDES = {1: (1,), 2: (5, 1), 4: (7, 3, 2, 1)}


def state_digest(state):
    """sha256 over names, dtypes, shapes and bytes of a numpy state dict, in order."""
    digest = hashlib.sha256()
    for name, value in state.items():
        value = np.ascontiguousarray(value)
        digest.update(f"{name}|{value.dtype.str}|{value.shape}|".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _release_model(torch, arch, dropout_rate):
    """The release's iRevNet (eval-mode forward), written from the paper, release names."""
    nn = torch.nn

    def psi(x, block):
        # out[n, (i*b + j)*C + c, h, w] = in[n, c, h*b + i, w*b + j]
        n, c, h, w = x.shape
        x = x.reshape(n, c, h // block, block, w // block, block)
        return x.permute(0, 3, 5, 1, 2, 4).reshape(n, block * block * c, h // block, w // block)

    class Block(nn.Module):
        def __init__(self, stride, first, conv_in, out_ch, pad):
            super().__init__()
            self.stride, self.pad, self.out_ch = stride, pad, out_ch
            width = out_ch // arch.mult
            layers = []
            if not first:
                layers += [nn.BatchNorm2d(conv_in), nn.ReLU()]
            layers += [nn.Conv2d(conv_in, width, 3, stride=stride, padding=1, bias=False),
                       nn.BatchNorm2d(width), nn.ReLU(),
                       nn.Conv2d(width, width, 3, padding=1, bias=False),
                       nn.Dropout(dropout_rate), nn.BatchNorm2d(width), nn.ReLU(),
                       nn.Conv2d(width, out_ch, 3, padding=1, bias=False)]
            self.bottleneck_block = nn.Sequential(*layers)

        def forward(self, pair):
            x1, x2 = pair
            if self.pad:  # The release's injective padding: zeros after both halves.
                merged = torch.cat([x1, x2, x1.new_zeros(
                    (x1.shape[0], self.pad) + tuple(x1.shape[2:]))], dim=1)
                x1, x2 = merged[:, :self.out_ch], merged[:, self.out_ch:]
            fx2 = self.bottleneck_block(x2)
            if self.stride == 2:
                x1, x2 = psi(x1, 2), psi(x2, 2)
            return x2, fx2 + x1

    class IRevNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stack = nn.ModuleList(Block(*plan) for plan in arch.block_plan())
            head = 2 * arch.channels[-1]
            self.bn1 = nn.BatchNorm2d(head, momentum=0.9)
            self.linear = nn.Linear(head, arch.num_classes)

        def forward(self, x):
            if arch.init_ds:
                x = psi(x, arch.init_ds)
            n = x.shape[1] // 2
            pair = (x[:, :n], x[:, n:])
            for block in self.stack:
                pair = block(pair)
            phi = torch.cat(pair, dim=1)
            pooled = torch.relu(self.bn1(phi)).mean(dim=(2, 3))
            return self.linear(pooled), phi

    return IRevNet()


def _data_parallel(torch, module):
    """nn.DataParallel as the release used it: its state_dict names start with `module.`."""
    wrapped = torch.nn.DataParallel(module)
    assert next(iter(wrapped.state_dict())).startswith("module."), "no DataParallel prefix"
    return wrapped


def _release_checkpoint(torch, module, nested=True, drop_counters=False):
    state_dict = _data_parallel(torch, module).state_dict()
    if drop_counters:  # As torch <= 0.4.0 saved: no num_batches_tracked buffers.
        for name in [name for name in state_dict if name.endswith("num_batches_tracked")]:
            del state_dict[name]
    if not nested:
        return state_dict
    optimizer = torch.optim.SGD(module.parameters(), lr=0.001, momentum=0.9,
                                weight_decay=1e-4)
    return {"epoch": 128, "arch": "i-revnet-301", "best_prec1": 74.018,
            "state_dict": state_dict, "optimizer": optimizer.state_dict()}


def _save(torch, obj, path, legacy=False):
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)


def write_release_fixture(torch, directory, name, seed, legacy=False, nested=True,
                          reference=True, drop_counters=False):
    """One reduced release checkpoint (+ its reference outputs)."""
    arch_name = name.split("-")[0]
    arch = ARCHITECTURES[arch_name]
    state = ref.random_state_dict(ref.release_entries(arch), seed=seed)
    if drop_counters:  # torch <= 0.4.0 had no num_batches_tracked.
        state = collections.OrderedDict(
            (k, v) for k, v in state.items() if not k.endswith("num_batches_tracked"))
    module = _release_model(torch, arch, DROPOUT.get(arch_name, 0.0))
    module.load_state_dict(collections.OrderedDict(
        (k, torch.from_numpy(np.ascontiguousarray(v))) for k, v in state.items()),
        strict=not drop_counters)
    path = os.path.join(directory, f"release_{name}.pth")
    _save(torch, _release_checkpoint(torch, module, nested=nested, drop_counters=drop_counters),
          path, legacy=legacy)
    metadata = {"architecture": arch_name, "seed": seed, "digest": state_digest(state),
                "format": "legacy" if legacy else "zip", "nested": nested,
                "counters": not drop_counters}
    if reference:
        images = np.random.default_rng(1000 + seed).normal(
            size=(REFERENCE_IMAGES, arch.image_size, arch.image_size, 3)).astype("float32")
        outputs = {}
        for precision, dtype in (("float64", torch.float64), ("float32", torch.float32)):
            copy = _release_model(torch, arch, DROPOUT.get(arch_name, 0.0))
            copy.load_state_dict(module.state_dict())
            copy = copy.to(dtype).eval()
            with torch.no_grad():
                logits, phi = copy(torch.from_numpy(images.transpose(0, 3, 1, 2)).to(dtype))
            outputs[f"logits_{precision}"] = logits.numpy()
            if precision == "float64":  # float32's Phi would double the file and add nothing.
                outputs["phi_float64"] = phi.numpy().transpose(0, 2, 3, 1)
        # The independent numpy forward pass (release_reference) must agree with torch.
        want_logits, want_phi = ref.release_forward(state, arch, images)
        for key, want in (("logits_float64", want_logits), ("phi_float64", want_phi)):
            error = np.max(np.abs(outputs[key] - want)) / np.max(np.abs(want))
            assert error < 1e-12, (name, key, error)
        np.savez(os.path.join(directory, f"release_{name}_reference.npz"), images=images,
                 metadata=np.array(json.dumps(metadata).encode()), **outputs)
    return path, state, metadata


def _names_only(torch, state, prefix="module.", nested=True):
    """A checkpoint of `state`'s names, shapes and dtypes; every value a stride-0 view."""
    tensors = collections.OrderedDict(
        (prefix + name, torch.zeros((), dtype=getattr(torch, str(value.dtype))).expand(
            value.shape)) for name, value in state.items())
    if not nested:
        return tensors
    return {"epoch": 128, "arch": "i-revnet-301", "best_prec1": 74.018, "state_dict": tensors}


def refusal_states():
    """The refusal cases of test_release.py: name -> numpy state (values never read)."""
    broken = ref.random_state_dict(ref.release_entries(IMAGENET_LIKE), seed=8)
    del broken["stack.2.bottleneck_block.5.weight"]
    del broken["bn1.running_var"]
    broken["stack.1.bottleneck_block.3.extra"] = np.zeros(3, "float32")
    broken["classifier.weight"] = np.zeros((10, 192), "float32")
    broken["stack.0.bottleneck_block.3.weight"] = np.zeros((6, 6, 5, 5), "float32")
    broken["linear.weight"] = np.zeros((192, 10), "float32")
    integer = ref.random_state_dict(ref.release_entries(IMAGENET_LIKE), seed=9)
    integer["linear.bias"] = np.arange(10, dtype="int64")
    resnet = collections.OrderedDict([
        ("conv1.weight", np.zeros((64, 3, 7, 7), "float32")),
        ("bn1.weight", np.ones(64, "float32")), ("bn1.bias", np.zeros(64, "float32")),
        ("bn1.running_mean", np.zeros(64, "float32")),
        ("bn1.running_var", np.ones(64, "float32")),
        ("layer1.0.conv1.weight", np.zeros((64, 64, 3, 3), "float32")),
        ("fc.weight", np.zeros((1000, 2048), "float32")), ("fc.bias", np.zeros(1000, "float32"))])
    cifar54 = ref.random_state_dict(ref.release_entries(CIFAR54), seed=10)
    return {"refuse_missing_extra_shapes": broken, "refuse_integer_bias": integer,
            "refuse_resnet": resnet, "refuse_cifar54": cifar54}


def write_full_listing(torch, directory):
    """All 1,802 entries of the release's listing as views of one shared random storage."""
    rng = np.random.default_rng(12)
    base = torch.from_numpy(rng.standard_normal(SHARED_STORAGE, dtype=np.float32))
    tensors, layout = collections.OrderedDict(), []
    for name, shape, dtype in ref.read_tsv(os.path.join(DATA,
                                                        "release_state_dict_irevnet301.tsv")):
        if dtype == "int64":
            value = int(rng.integers(0, 10**6))
            tensors["module." + name] = torch.tensor(value)
            layout.append([name, list(shape), dtype, value, None])
            continue
        strides = VIEW_STRIDES[len(shape)]
        extent = sum((size - 1) * step for size, step in zip(shape, strides)) + 1
        offset = int(rng.integers(0, SHARED_STORAGE - extent + 1))
        tensors["module." + name] = torch.as_strided(base, shape, strides, offset)
        layout.append([name, list(shape), dtype, offset, list(strides)])
    path = os.path.join(directory, "release_irevnet301_full.pth")
    _save(torch, {"epoch": 128, "arch": "i-revnet-301", "best_prec1": 74.018,
                  "state_dict": tensors}, path)
    np.savez_compressed(os.path.join(directory, "release_irevnet301_full_layout.npz"),
                        storage=base.numpy(), layout=np.array(json.dumps(layout).encode()))
    return path


def full_listing_state(directory=DATA):
    """The full listing's values as numpy arrays, from its layout file (no torch)."""
    with np.load(os.path.join(directory, "release_irevnet301_full_layout.npz")) as data:
        storage = data["storage"]
        layout = json.loads(data["layout"].item().decode())
    state = collections.OrderedDict()
    for name, shape, dtype, offset, strides in layout:
        if strides is None:
            state[name] = np.array(offset, dtype=dtype)
        else:
            state[name] = np.lib.stride_tricks.as_strided(
                storage[offset:], shape=tuple(shape),
                strides=tuple(step * storage.itemsize for step in strides)).copy()
    return state


def reader_tensors(torch):
    """Tensors of every kind a state_dict may hold (test_torch_checkpoint.py)."""
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(5, 6, generator=generator)
    return collections.OrderedDict([
        ("conv.weight", torch.randn(4, 3, 3, 3, generator=generator)),
        ("bn.num_batches_tracked", torch.tensor(12345)),
        ("column_view", base[:, 1]),             # Offset and stride into a shared storage.
        ("transposed", base.t()),                # Non-contiguous strides.
        ("double", torch.randn(3, generator=generator).double()),
        ("half", torch.randn(3, generator=generator).half()),
        ("bfloat16", torch.randn(3, generator=generator).to(torch.bfloat16)),
        ("int32", torch.arange(4, dtype=torch.int32)),
        ("bool", torch.tensor([True, False])),
        ("empty", torch.zeros(0, 3)),
        ("parameter", torch.nn.Parameter(torch.randn(2, generator=generator))),
    ])


def _expected_numpy(torch, tensors):
    expected = collections.OrderedDict()
    for name, tensor in tensors.items():
        tensor = tensor.detach()
        expected[name] = (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()
    return expected


def write_reader_fixtures(torch, directory):
    tensors = reader_tensors(torch)
    for legacy in (False, True):
        _save(torch, {"state_dict": tensors, "epoch": 7, "best_prec1": 74.018,
                      "args": argparse.Namespace(lr=0.1), "name": "i-revnet"},
              os.path.join(directory, f"reader_kinds_{'legacy' if legacy else 'zip'}.pth"),
              legacy=legacy)
    _save(torch, tensors, os.path.join(directory, "reader_kinds_bare.pt"))
    expected = _expected_numpy(torch, tensors)
    np.savez(os.path.join(directory, "reader_kinds_expected.npz"),
             names=np.array(list(expected)), **expected)

    generator = torch.Generator().manual_seed(1)
    _save(torch, {"w": torch.randn(4, 4, generator=generator)},
          os.path.join(directory, "reader_w4x4.pth"))
    for legacy in (False, True):  # Big enough to lose 1000 bytes of tensor data.
        _save(torch, {"state_dict": {"w": torch.randn(64, 64, generator=generator)}},
              os.path.join(directory, f"reader_w64_{'legacy' if legacy else 'zip'}.pth"),
              legacy=legacy)

    # A real module's state_dict carries `_metadata` and the DataParallel prefix.
    torch.manual_seed(0)
    module = torch.nn.DataParallel(torch.nn.Sequential(
        torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 3, bias=False)))
    with torch.no_grad():  # Non-trivial statistics, so every entry has distinct values.
        module.module[0].running_mean.normal_()
        module.module[0].running_var.uniform_(0.5, 2.0)
        module.module[0].num_batches_tracked.fill_(77)
    state_dict = module.state_dict()
    for legacy in (False, True):
        _save(torch, {"state_dict": state_dict},
              os.path.join(directory, f"reader_module_{'legacy' if legacy else 'zip'}.pth"),
              legacy=legacy)
    np.savez(os.path.join(directory, "reader_module_expected.npz"),
             names=np.array(list(state_dict)), **{
                 name: tensor.numpy() for name, tensor in state_dict.items()})

    # torch.save(model): a pickled module, which the converter must refuse without running.
    _save(torch, torch.nn.Sequential(torch.nn.Linear(2, 2)),
          os.path.join(directory, "whole_module.pth"))


def _self_check(torch, directory):
    """torch.load(weights_only) and the torch-free reader agree on every tensor of every file."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(DATA))))
    from irevnet_tf.conversion.torch_checkpoint import load_torch_checkpoint

    def flatten(value, prefix=""):
        if isinstance(value, dict):
            for key, item in value.items():
                yield from flatten(item, f"{prefix}/{key}")
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                yield from flatten(item, f"{prefix}/{index}")
        elif isinstance(value, (torch.Tensor, np.ndarray)):
            yield prefix, value

    checked = 0
    for name in sorted(os.listdir(directory)):
        if not name.endswith((".pth", ".pt")) or name == "whole_module.pth":
            continue
        path = os.path.join(directory, name)
        with torch.serialization.safe_globals([argparse.Namespace]):
            via_torch = dict(flatten(torch.load(path, map_location="cpu", weights_only=True)))
        builtin = dict(flatten(load_torch_checkpoint(path)))
        assert list(via_torch) == list(builtin), name
        for key, tensor in via_torch.items():
            tensor = tensor.detach()
            want = (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()
            assert builtin[key].dtype == want.dtype and builtin[key].shape == want.shape, key
            np.testing.assert_array_equal(builtin[key], want, err_msg=f"{name}{key}")
            checked += 1
    return checked


# (name, seed, options): the release fixtures; the name's part before "-" is the architecture.
RELEASE_FIXTURES = (
    # The release's own layout: legacy format (torch < 1.6), nested, `module.` prefix.
    ("imagenet_like", 1, dict(legacy=True)),
    ("cifar_like", 1, dict()),
    ("cifar_like-legacy_bare", 6, dict(legacy=True, nested=False, reference=False,
                                       drop_counters=True)),
    ("cifar_like-zip_bare", 6, dict(nested=False, reference=False)),
    ("tiny", 1, dict()),
    ("tiny-legacy", 3, dict(legacy=True)),
)


def write_all(directory):
    import torch

    torch.manual_seed(0)
    manifest = {}
    for name, seed, kwargs in RELEASE_FIXTURES:
        _, _, manifest[name] = write_release_fixture(torch, directory, name, seed, **kwargs)
    with open(os.path.join(directory, "release_fixtures.json"), "w") as handle:
        json.dump(manifest, handle, indent=1, sort_keys=True)
        handle.write("\n")
    for name, state in refusal_states().items():
        _save(torch, _names_only(torch, state), os.path.join(directory, f"{name}.pth"))
    write_full_listing(torch, directory)
    write_reader_fixtures(torch, directory)
    return _self_check(torch, directory)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="write to a temporary directory and list files that differ")
    args = parser.parse_args(argv)
    if not args.check:
        checked = write_all(DATA)
        print(f"wrote {DATA}; torch.load and the builtin reader agree on {checked} tensors")
        return 0
    scratch = tempfile.mkdtemp()
    try:
        checked = write_all(scratch)
        differ = [name for name in sorted(os.listdir(scratch))
                  if not _same_content(os.path.join(scratch, name), os.path.join(DATA, name))]
        print(f"{checked} tensors agree; files whose content differs: {differ or 'none'}")
        return 1 if differ else 0
    finally:
        shutil.rmtree(scratch)


def _same_content(new, old):
    """Same bytes, or for checkpoints the same pickled structure and tensor values: the
    legacy format names its storages after memory addresses, so its bytes vary per run."""
    if not os.path.exists(old):
        return False
    with open(new, "rb") as a, open(old, "rb") as b:
        if a.read() == b.read():
            return True
    if not new.endswith((".pth", ".pt")):
        return False
    from irevnet_tf.conversion.torch_checkpoint import load_torch_checkpoint

    def flat(value, prefix=""):
        if isinstance(value, dict):
            for key, item in value.items():
                yield from flat(item, f"{prefix}/{key}")
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                yield from flat(item, f"{prefix}/{index}")
        elif isinstance(value, np.ndarray):
            yield prefix, (value.dtype.str, value.shape, value.tobytes())
        else:
            yield prefix, repr(value)

    return list(flat(load_torch_checkpoint(new))) == list(flat(load_torch_checkpoint(old)))


if __name__ == "__main__":
    sys.exit(main())
