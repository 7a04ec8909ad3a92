"""The same i-RevNet in PyTorch, timed beside irevnet_tf on this machine.

    python -m benchmarks.pytorch_reference                 # irevnet301 b8, irevnet_cifar b64
    python -m benchmarks.pytorch_reference --configs=irevnet_small --batch_sizes=16

The issues quote the authors' PyTorch release at fixed images/s "on this CPU"; a shared
machine's speed drifts, so this benchmark measures the reference here, in the same process
and the same minutes as irevnet_tf, and reports the ratios. The PyTorch model is the
release's architecture as the paper and the release describe it (NCHW;
`nn.Conv2d(padding=1, bias=False)`, `nn.BatchNorm2d`, psi as space-to-depth, the release's
inverse without any projection).
It is given the Keras model's weights and batch-norm statistics, and its Phi must equal
irevnet_tf's before anything is timed, so both sides compute the same function.

Measured, alternating TF and PyTorch on the same inputs, 2 intra-op threads each:
- inference: `encode` (Phi) and `decode` images/s, and the float32 round-trip error
  max|decode(encode(x)) - x| / max|x| on natural images after the same calibration;
- training: one SGD step (momentum 0.9, coupled weight decay 1e-4 as the trainer's,
  cross-entropy, batch norm in training mode) with plain autodiff in PyTorch, and
  irevnet_tf's compiled `TrainingLoops` step (reversible and plain) on the same batch.

PyTorch is not a dependency of irevnet_tf; install it to run this (`pip install torch`).
"""


from absl import app, flags

from benchmarks import common

FLAGS = flags.FLAGS
common.define_config_flags()
flags.DEFINE_integer("repeats", 5, "Timed calls per measurement (the median is reported).")
flags.DEFINE_integer("threads", 2, "Intra-op threads of both frameworks.")
common.define_calibration_flag()
# `--help` lists this script's key flags: also the ones defined in common.
flags.adopt_module_key_flags(common)
flags.DEFINE_bool("train", True, "Also time a training step in both frameworks.")
flags.DEFINE_list("modes", ["reversible", "plain"], "irevnet_tf gradient modes to train with.")
flags.DEFINE_integer("train_steps", 3, "Steps per timed irevnet_tf training-loop call.")

LEARNING_RATE = 0.1  # Both frameworks; momentum and decay are common.MOMENTUM, L2_DECAY.


def _torch_modules():
    """Defines the PyTorch modules lazily, so that `--help` works without torch."""
    import torch
    from torch import nn

    def space_to_depth(x, block):
        # NCHW version of tf.nn.space_to_depth's ordering: channel (i * b + j) * C + c.
        n, c, h, w = x.shape
        x = x.reshape(n, c, h // block, block, w // block, block)
        return x.permute(0, 3, 5, 1, 2, 4).reshape(n, block * block * c, h // block, w // block)

    def depth_to_space(x, block):
        n, c, h, w = x.shape
        x = x.reshape(n, block, block, c // (block * block), h, w)
        return x.permute(0, 3, 4, 1, 5, 2).reshape(n, c // (block * block), h * block, w * block)

    class TorchBlock(nn.Module):
        def __init__(self, in_halves, out_channels, stride, first, mult, dropout_rate):
            super().__init__()
            self.stride = stride
            self.out_channels = out_channels
            self.in_halves = in_halves
            self.pad = 2 * out_channels - sum(in_halves) if stride == 1 else 0
            width = out_channels // mult
            f_in = out_channels if self.pad else in_halves[1]
            layers = []
            if not first:
                layers += [nn.BatchNorm2d(f_in, momentum=0.1, eps=1e-5), nn.ReLU()]
            layers += [nn.Conv2d(f_in, width, 3, stride, 1, bias=False),
                       nn.BatchNorm2d(width, momentum=0.1, eps=1e-5), nn.ReLU(),
                       nn.Conv2d(width, width, 3, 1, 1, bias=False),
                       nn.Dropout(dropout_rate),
                       nn.BatchNorm2d(width, momentum=0.1, eps=1e-5), nn.ReLU(),
                       nn.Conv2d(width, out_channels, 3, 1, 1, bias=False)]
            self.bottleneck = nn.Sequential(*layers)

        def psi(self, x):
            return x if self.stride == 1 else space_to_depth(x, self.stride)

        def psi_inverse(self, x):
            return x if self.stride == 1 else depth_to_space(x, self.stride)

        def forward(self, pair):
            x1, x2 = pair
            if self.pad:
                merged = torch.cat([x1, x2, x1.new_zeros(
                    x1.shape[0], self.pad, *x1.shape[2:])], dim=1)
                x1, x2 = merged[:, :self.out_channels], merged[:, self.out_channels:]
            return self.psi(x2), self.bottleneck(x2) + self.psi(x1)

        def inverse(self, pair):
            y2, y1 = pair
            x2 = self.psi_inverse(y2)
            x1 = self.psi_inverse(y1 - self.bottleneck(x2))
            if self.pad:
                merged = torch.cat([x1, x2], dim=1)[:, :sum(self.in_halves)]
                x1, x2 = merged[:, :self.in_halves[0]], merged[:, self.in_halves[0]:]
            return x1, x2

    class TorchIRevNet(nn.Module):
        def __init__(self, keras_model):
            super().__init__()
            self.init_ds = keras_model.init_ds
            channels = keras_model.image_shape[-1] * max(self.init_ds, 1) ** 2
            halves = (channels // 2, channels - channels // 2)
            self.stack = nn.ModuleList()
            for block in keras_model.stack:
                self.stack.append(TorchBlock(halves, block.out_channels, block.stride,
                                             block.first, block.mult, block.dropout_rate))
                halves = (block.out_channels, block.out_channels)
            final = 2 * keras_model.channels[-1]
            self.head_bn = nn.BatchNorm2d(final, momentum=0.1, eps=1e-5)
            self.classifier = nn.Linear(final, keras_model.num_classes)

        def encode(self, x):
            if self.init_ds:
                x = space_to_depth(x, self.init_ds)
            half = x.shape[1] // 2
            pair = (x[:, :half], x[:, half:])
            for block in self.stack:
                pair = block(pair)
            return torch.cat(pair, dim=1)

        def decode(self, phi):
            half = phi.shape[1] // 2
            pair = (phi[:, :half], phi[:, half:])
            for block in reversed(self.stack):
                pair = block.inverse(pair)
            x = torch.cat(pair, dim=1)
            return depth_to_space(x, self.init_ds) if self.init_ds else x

        def forward(self, x):
            h = torch.relu(self.head_bn(self.encode(x)))
            return self.classifier(h.mean(dim=(2, 3)))

    return torch, TorchIRevNet


def copy_weights(keras_model, torch_model, torch):
    """Keras HWIO kernels -> OIHW, batch norms with their moving statistics, Dense kernel^T."""
    def set_bn(torch_bn, keras_bn):
        for name, variable in (("weight", keras_bn.gamma), ("bias", keras_bn.beta),
                               ("running_mean", keras_bn.moving_mean),
                               ("running_var", keras_bn.moving_variance)):
            getattr(torch_bn, name).data.copy_(torch.from_numpy(variable.numpy()))

    def set_conv(torch_conv, keras_conv):
        kernel = keras_conv.kernel.numpy().transpose(3, 2, 0, 1).copy()
        torch_conv.weight.data.copy_(torch.from_numpy(kernel))

    for torch_block, block in zip(torch_model.stack, keras_model.stack):
        bottleneck = block.bottleneck
        keras_layers = ([bottleneck.preact_bn] if bottleneck.preact_bn is not None else []) + [
            bottleneck.conv1, bottleneck.bn1, bottleneck.conv2, bottleneck.bn2,
            bottleneck.conv3]
        torch_layers = [m for m in torch_block.bottleneck
                        if isinstance(m, (torch.nn.Conv2d, torch.nn.BatchNorm2d))]
        for torch_layer, keras_layer in zip(torch_layers, keras_layers):
            (set_conv if isinstance(torch_layer, torch.nn.Conv2d) else set_bn)(
                torch_layer, keras_layer)
    set_bn(torch_model.head_bn, keras_model.head_bn)
    torch_model.classifier.weight.data.copy_(
        torch.from_numpy(keras_model.classifier.kernel.numpy().T.copy()))
    torch_model.classifier.bias.data.copy_(
        torch.from_numpy(keras_model.classifier.bias.numpy()))


def _tf_train_step_seconds(name, batch_size, mode, images, labels):
    """Seconds per step of irevnet_tf's training loop (the trainer's), on a fixed batch."""
    import tensorflow as tf

    from irevnet_tf import configs

    strategy = tf.distribute.get_strategy()
    model = configs.build_irevnet(name, reversible=(mode == "reversible"))
    loops = common.trainer_loops(strategy, model, batch_size, LEARNING_RATE, jit_compile=False)
    dataset = tf.data.Dataset.from_tensors((images, labels)).repeat()
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    steps = FLAGS.train_steps
    median, samples = common.time_call(lambda: loops.train(iterator, steps), FLAGS.repeats)
    return median / steps, [s / steps for s in samples]


def measure(name, batch_size):
    import numpy as np
    import tensorflow as tf

    torch, TorchIRevNet = _torch_modules()
    torch.set_num_threads(FLAGS.threads)
    model, images = common.calibrated_model(name, batch_size, FLAGS.calibration_steps,
                                           FLAGS.seed)

    torch_model = TorchIRevNet(model).eval()
    copy_weights(model, torch_model, torch)
    torch_images = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    tf_images = tf.constant(images)

    tf_phi = model.encode(tf_images)
    with torch.inference_mode():
        torch_phi = torch_model.encode(torch_images)
        torch_restored = torch_model.decode(torch_phi)
    tf_phi_real = model.dequantize(tf_phi).numpy()  # int32 grid points -> real units
    phi_gap = float(np.max(np.abs(torch_phi.numpy().transpose(0, 2, 3, 1) - tf_phi_real))
                    / np.max(np.abs(tf_phi_real)))
    if not phi_gap < 1e-3:
        raise RuntimeError(f"{name}: the PyTorch model's Phi differs from irevnet_tf's by "
                           f"{phi_gap:.3g} (relative); the comparison would be meaningless.")
    tf_error = float(np.max(np.abs(model.decode(tf_phi).numpy() - images)) / np.max(np.abs(images)))
    torch_error = float(np.max(np.abs(torch_restored.numpy().transpose(0, 2, 3, 1) - images))
                        / np.max(np.abs(images)))
    results = {"config": name, "batch_size": batch_size, "phi_max_rel_gap": phi_gap,
               "tf_round_trip_max_rel_error": tf_error,
               "torch_round_trip_max_rel_error": torch_error}

    def torch_no_grad(function):
        def run():
            with torch.inference_mode():
                return function()
        return run

    timings = {
        "tf_encode": lambda: model.encode(tf_images),
        "torch_encode": torch_no_grad(lambda: torch_model.encode(torch_images)),
        "tf_decode": lambda: model.decode(tf_phi),
        "torch_decode": torch_no_grad(lambda: torch_model.decode(torch_phi)),
    }
    for key, function in timings.items():
        median, samples = common.time_call(function, FLAGS.repeats)
        results[f"{key}_images_per_s"] = batch_size / median
        results[f"{key}_samples_s"] = [round(s, 4) for s in samples]
    for path in ("encode", "decode"):
        results[f"tf_over_torch_{path}_speed"] = (
            results[f"tf_{path}_images_per_s"] / results[f"torch_{path}_images_per_s"])

    if FLAGS.train:
        labels = np.arange(batch_size, dtype=np.int32) % model.num_classes
        torch_model.train()
        optimizer = torch.optim.SGD(torch_model.parameters(), lr=LEARNING_RATE,
                                    momentum=common.MOMENTUM, weight_decay=common.L2_DECAY)
        torch_labels = torch.from_numpy(labels.astype(np.int64))

        def torch_step():
            optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(torch_model(torch_images), torch_labels)
            loss.backward()
            optimizer.step()
            return loss.item()

        median, samples = common.time_call(torch_step, FLAGS.repeats)
        results["torch_train_images_per_s"] = batch_size / median
        results["torch_train_samples_s"] = [round(s, 4) for s in samples]
        for mode in FLAGS.modes:
            median, samples = _tf_train_step_seconds(name, batch_size, mode, images, labels)
            results[f"tf_{mode}_train_images_per_s"] = batch_size / median
            results[f"tf_{mode}_train_samples_s"] = [round(s, 4) for s in samples]
            results[f"tf_{mode}_over_torch_train_speed"] = (
                results[f"tf_{mode}_train_images_per_s"] / results["torch_train_images_per_s"])
    return results


def main(argv):
    del argv
    common.check_gradient_modes(FLAGS.modes)
    common.print_measurements(measure, FLAGS.configs, FLAGS.batch_sizes, FLAGS.threads)


if __name__ == "__main__":
    app.run(main)
