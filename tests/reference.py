"""Independent numpy (float64) reference computations of i-RevNet, written from the paper
(Jacobsen, Smeulders, Oyallon, ICLR 2018; the facts used are stated where they are used).

Nothing here imports irevnet_tf: the tests compare the library against these.
"""

import numpy as np


def space_to_depth(x, b):
    """out[n, h, w, (i*b + j)*C + c] = in[n, h*b + i, w*b + j, c], by explicit indexing."""
    n, h, w, c = x.shape
    out = np.zeros((n, h // b, w // b, c * b * b), x.dtype)
    for i in range(b):
        for j in range(b):
            out[..., (i * b + j) * c:(i * b + j + 1) * c] = x[:, i::b, j::b, :]
    return out


def conv3x3(x, kernel, stride=1):
    """3x3 convolution with PyTorch's padding=1 (one zero pixel on every side), NHWC/HWIO."""
    n, h, w, _ = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out_h, out_w = (h + 2 - 3) // stride + 1, (w + 2 - 3) // stride + 1
    out = np.zeros((n, out_h, out_w, kernel.shape[-1]))
    for di in range(3):
        for dj in range(3):
            patch = padded[:, di:di + stride * out_h:stride, dj:dj + stride * out_w:stride, :]
            out += np.einsum("nhwc,co->nhwo", patch, kernel[di, dj])
    return out


def batch_norm_inference(x, gamma, beta, mean, var, eps=1e-5):
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def relu(x):
    return np.maximum(x, 0)


def bottleneck(x, weights, stride, preactivation, eps=1e-5):
    """F in inference mode. `weights` maps names to arrays: preact_bn, conv1, bn1, conv2,
    bn2, conv3; batch norms are (gamma, beta, mean, var) tuples."""
    h = x
    if preactivation:
        h = relu(batch_norm_inference(h, *weights["preact_bn"], eps=eps))
    h = conv3x3(h, weights["conv1"], stride)
    h = relu(batch_norm_inference(h, *weights["bn1"], eps=eps))
    h = conv3x3(h, weights["conv2"])
    h = relu(batch_norm_inference(h, *weights["bn2"], eps=eps))
    return conv3x3(h, weights["conv3"])


def round_to_grid(x, fraction_bits):
    """x rounded to the nearest multiple of 2**-fraction_bits (ties to even), in float64."""
    scale = 2.0 ** fraction_bits
    return np.round(np.asarray(x, np.float64) * scale) / scale


def block_forward(x1, x2, weights, out_channels, stride, preactivation, fraction_bits=None):
    """The release's block: optional injective padding, then (psi(x2), F(x2) + psi(x1)),
    with F(x2) rounded onto the grid 2**-fraction_bits when that is given (the exact
    stream)."""
    pad = 2 * out_channels - x1.shape[-1] - x2.shape[-1] if stride == 1 else 0
    if pad:
        merged = np.concatenate([x1, x2, np.zeros(x1.shape[:3] + (pad,))], axis=-1)
        x1, x2 = merged[..., :out_channels], merged[..., out_channels:]
    fx2 = bottleneck(x2, weights, stride, preactivation)
    if fraction_bits is not None:
        fx2 = round_to_grid(fx2, fraction_bits)
    if stride > 1:
        x1, x2 = space_to_depth(x1, stride), space_to_depth(x2, stride)
    return x2, fx2 + x1


def depth_to_space(y, b):
    """Inverse of `space_to_depth`: in[n, h*b + i, w*b + j, c] = out[n, h, w, (i*b + j)*C + c]."""
    n, h, w, cb = y.shape
    c = cb // (b * b)
    out = np.zeros((n, h * b, w * b, c), y.dtype)
    for i in range(b):
        for j in range(b):
            out[:, i::b, j::b, :] = y[..., (i * b + j) * c:(i * b + j + 1) * c]
    return out


def block_inverse(y2, y1, weights, input_halves, stride, preactivation, fraction_bits=None):
    """The pair (x1, x2) that `block_forward` maps to (y2, y1): x2 = psi^-1(y2), then
    x1 = psi^-1(y1 - F(x2)) (F rounded onto the grid when `fraction_bits` is given), and an
    injective block's zero channels dropped after the halves are merged."""
    unpsi = (lambda t: depth_to_space(t, stride)) if stride > 1 else (lambda t: t)
    x2 = unpsi(y2)
    fx2 = bottleneck(x2, weights, stride, preactivation)
    if fraction_bits is not None:
        fx2 = round_to_grid(fx2, fraction_bits)
    x1 = unpsi(y1 - fx2)
    c1, c2 = input_halves
    merged = np.concatenate([x1, x2], axis=-1)[..., :c1 + c2]
    return merged[..., :c1], merged[..., c1:]
