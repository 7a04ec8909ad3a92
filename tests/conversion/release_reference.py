"""Test helpers written from the paper and the release's checkpoint layout, independent of
irevnet_tf: the release's state_dict names and shapes, random release-like weights and a
float64 numpy forward pass of the release's NCHW computation (make_fixtures.py checks it
against the release's torch model)."""

import collections
import dataclasses

import numpy as np

EPSILON = 1e-5  # The release's batch-norm epsilon (PyTorch's default).


@dataclasses.dataclass
class Architecture:
    """The release's constructor arguments (its iRevNet(nBlocks, nStrides, nChannels, ...))."""

    blocks: tuple
    strides: tuple
    channels: tuple
    init_ds: int = 2
    in_channels: int = 3
    mult: int = 4
    num_classes: int = 1000
    image_size: int = 224

    def model_overrides(self):
        return dict(blocks=self.blocks, strides=self.strides, channels=self.channels,
                    init_ds=self.init_ds, mult=self.mult, num_classes=self.num_classes,
                    input_shape=(self.image_size, self.image_size, self.in_channels))

    def block_plan(self):
        """Per block: (stride, first, conv1 input channels, out channels, pad)."""
        in_ch = self.in_channels * (self.init_ds ** 2 if self.init_ds else 1)
        plan, first = [], True
        for depth, stage_stride, out_ch in zip(self.blocks, self.strides, self.channels):
            for index in range(depth):
                stride = stage_stride if index == 0 else 1
                pad = 2 * out_ch - in_ch
                conv_in = out_ch if (pad != 0 and stride == 1) else in_ch // 2
                plan.append((stride, first, conv_in, out_ch, pad if stride == 1 else 0))
                in_ch, first = 2 * out_ch, False
        return plan


IREVNET301 = Architecture(blocks=(6, 16, 72, 6), strides=(2, 2, 2, 2),
                          channels=(24, 96, 384, 1536))


def release_entries(arch):
    """[(name, shape, dtype)] in the order of the release's state_dict."""
    entries = []

    def batch_norm(prefix, width):
        for field in ("weight", "bias", "running_mean", "running_var"):
            entries.append((f"{prefix}.{field}", (width,), "float32"))
        entries.append((f"{prefix}.num_batches_tracked", (), "int64"))

    for k, (_, first, conv_in, out_ch, _) in enumerate(arch.block_plan()):
        width = out_ch // arch.mult
        p = f"stack.{k}.bottleneck_block"
        offset = 0
        if not first:
            batch_norm(f"{p}.0", conv_in)
            offset = 2
        entries.append((f"{p}.{offset}.weight", (width, conv_in, 3, 3), "float32"))
        batch_norm(f"{p}.{offset + 1}", width)
        entries.append((f"{p}.{offset + 3}.weight", (width, width, 3, 3), "float32"))
        batch_norm(f"{p}.{offset + 5}", width)
        entries.append((f"{p}.{offset + 7}.weight", (out_ch, width, 3, 3), "float32"))
    head = 2 * arch.channels[-1]
    batch_norm("bn1", head)
    entries.append(("linear.weight", (arch.num_classes, head), "float32"))
    entries.append(("linear.bias", (arch.num_classes,), "float32"))
    return entries


def random_state_dict(entries, seed=0):
    """Release-like values: PyTorch-scale weights and non-trivial batch-norm statistics."""
    rng = np.random.default_rng(seed)
    state = collections.OrderedDict()
    for name, shape, dtype in entries:
        field = name.rsplit(".", 1)[1]
        if field == "num_batches_tracked":
            value = np.array(int(rng.integers(1000, 10**6)), dtype="int64")
        elif field == "running_mean":
            value = rng.normal(0.0, 0.2, shape)
        elif field == "running_var":
            value = rng.uniform(0.5, 2.0, shape)
        elif len(shape) == 1 and field == "weight":
            value = rng.uniform(0.5, 1.5, shape)
        elif len(shape) == 1:
            value = rng.normal(0.0, 0.1, shape)
        else:
            fan_in = int(np.prod(shape[1:]))
            value = rng.uniform(-1.0, 1.0, shape) / np.sqrt(fan_in)
        state[name] = np.asarray(value, dtype=dtype)
    return state


# --- the release's forward pass in NCHW, float64 ------------------------------------------


def psi(x, block):
    """out[n, (i*b + j)*C + c, h, w] = in[n, c, h*b + i, w*b + j]."""
    n, c, h, w = x.shape
    x = x.reshape(n, c, h // block, block, w // block, block)
    return x.transpose(0, 3, 5, 1, 2, 4).reshape(n, block * block * c, h // block, w // block)


def conv3x3(x, weight, stride):
    """PyTorch Conv2d(kernel 3, padding=1, stride, bias=False) on NCHW with OIHW weights."""
    n, _, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out_h, out_w = (h - 1) // stride + 1, (w - 1) // stride + 1
    out = np.zeros((n, weight.shape[0], out_h, out_w))
    for kh in range(3):
        for kw in range(3):
            window = padded[:, :, kh: kh + stride * (out_h - 1) + 1: stride,
                            kw: kw + stride * (out_w - 1) + 1: stride]
            out += np.einsum("nchw,oc->nohw", window, weight[:, :, kh, kw])
    return out


def batch_norm(x, state, prefix):
    shape = (1, -1, 1, 1) if x.ndim == 4 else (1, -1)
    get = lambda field: state[f"{prefix}.{field}"].astype(np.float64).reshape(shape)  # noqa: E731
    return (x - get("running_mean")) / np.sqrt(get("running_var") + EPSILON) * get("weight") \
        + get("bias")


def relu(x):
    return np.maximum(x, 0.0)


def bottleneck(x, state, k, stride, first):
    p = f"stack.{k}.bottleneck_block"
    w = lambda index: state[f"{p}.{index}.weight"].astype(np.float64)  # noqa: E731
    if first:
        h = conv3x3(x, w(0), stride)
        h = relu(batch_norm(h, state, f"{p}.1"))
        h = conv3x3(h, w(3), 1)
        h = relu(batch_norm(h, state, f"{p}.5"))
        return conv3x3(h, w(7), 1)
    h = relu(batch_norm(x, state, f"{p}.0"))
    h = conv3x3(h, w(2), stride)
    h = relu(batch_norm(h, state, f"{p}.3"))
    h = conv3x3(h, w(5), 1)
    h = relu(batch_norm(h, state, f"{p}.7"))
    return conv3x3(h, w(9), 1)


def release_forward(state, arch, images_nhwc):
    """(logits, phi_nhwc) of the release in inference mode, float64."""
    x = np.asarray(images_nhwc, np.float64).transpose(0, 3, 1, 2)
    if arch.init_ds:
        x = psi(x, arch.init_ds)
    n = x.shape[1] // 2
    x1, x2 = x[:, :n], x[:, n:]
    for k, (stride, first, _, out_ch, pad) in enumerate(arch.block_plan()):
        if pad:
            merged = np.concatenate([x1, x2, np.zeros((x.shape[0], pad) + x1.shape[2:])], 1)
            x1, x2 = merged[:, :out_ch], merged[:, out_ch:]
        fx2 = bottleneck(x2, state, k, stride, first)
        if stride == 2:
            x1, x2 = psi(x1, 2), psi(x2, 2)
        x1, x2 = x2, fx2 + x1  # The block returns (psi(x2), F(x2) + psi(x1)).
    phi = np.concatenate([x1, x2], axis=1)
    pooled = relu(batch_norm(phi, state, "bn1")).mean(axis=(2, 3))
    logits = pooled @ state["linear.weight"].astype(np.float64).T \
        + state["linear.bias"].astype(np.float64)
    return logits, phi.transpose(0, 2, 3, 1)


def read_tsv(path):
    entries = []
    with open(path, encoding="utf-8") as handle:
        header = handle.readline().rstrip("\n").split("\t")
        assert header == ["key", "shape", "dtype"], header
        for line in handle:
            if not line.strip():
                continue
            name, shape, dtype = line.rstrip("\n").split("\t")
            dims = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
            entries.append((name, dims, dtype))
    return entries
