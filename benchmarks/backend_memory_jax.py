r"""Activation memory of a JAX training gradient: reversible (memory-saving) vs plain autodiff.

For each blocks multiplier (depth) and gradient kind it builds the model on KERAS_BACKEND=jax,
compiles `jax.value_and_grad` of the mean cross-entropy through `model.stateless_call`
(what Keras' JAX `train_step` differentiates) with `jax.jit(...).lower(...).compile()`, and
reports XLA's buffer assignment from `compiled.memory_analysis()`:

- temp: the temporaries of the compiled gradient (activations kept for the backward pass,
  rebuilds, gradient buffers in flight): XLA's exact peak over its schedule, less
  arguments and outputs. This is the figure that should stay flat in depth for the
  reversible gradient and grow with depth for plain autodiff.
- args / outputs: the weights, images and labels in; loss, statistics and gradients out.

Nothing runs (compilation only), so it needs no more memory than compiling does; on CPU
`jax.devices()[0].memory_stats()` is None, which is why the compiled analysis is used.

Examples:
    KERAS_BACKEND=jax python benchmarks/backend_memory_jax.py
    KERAS_BACKEND=jax python benchmarks/backend_memory_jax.py --config=irevnet_small \
        --batch_size=32 --multipliers=1,2
"""

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from irevnet_tf import configs  # noqa: E402

MIB = 2.0 ** 20


def gradient_memory(config, batch_size, multiplier, reversible):
    """XLA's memory analysis of the compiled loss gradient of `config` with every stage's
    block count times `multiplier`."""
    kwargs = configs.get_config(config)
    kwargs["blocks"] = tuple(b * multiplier for b in kwargs["blocks"])
    kwargs["reversible"] = reversible
    model = configs.build_irevnet(config, **{k: v for k, v in kwargs.items()
                                              if k in ("blocks", "reversible")})
    shape = kwargs["input_shape"]
    images = jax.ShapeDtypeStruct((batch_size, *shape), jnp.float32)
    labels = jax.ShapeDtypeStruct((batch_size,), jnp.int32)
    seed = jnp.asarray([1, 2], jnp.uint32) if model.dropout_rate else None

    def loss(trainable, non_trainable, images, labels):
        logits, new_values = model.stateless_call(trainable, non_trainable, images,
                                                  training=True, dropout_seed=seed)
        value = keras.ops.mean(keras.losses.sparse_categorical_crossentropy(
            labels, logits, from_logits=True))
        return value, new_values

    def spec(variables):
        return [jax.ShapeDtypeStruct(v.shape, v.dtype) for v in variables]

    start = time.perf_counter()
    compiled = jax.jit(jax.value_and_grad(loss, has_aux=True)).lower(
        spec(model.trainable_variables), spec(model.non_trainable_variables),
        images, labels).compile()
    analysis = compiled.memory_analysis()
    return dict(blocks=sum(kwargs["blocks"]), temp=analysis.temp_size_in_bytes,
                args=analysis.argument_size_in_bytes, outputs=analysis.output_size_in_bytes,
                compile_s=time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="irevnet_small")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--multipliers", default="1,2",
                        help="comma-separated multipliers of every stage's block count")
    args = parser.parse_args(argv)
    if keras.backend.backend() != "jax":
        parser.error("run with KERAS_BACKEND=jax")
    multipliers = [int(m) for m in args.multipliers.split(",")]
    print(f"{args.config}, batch {args.batch_size}, jax {jax.__version__}, "
          f"{jax.devices()[0].platform}; XLA memory_analysis of the compiled gradient (MiB)")
    print(f"{'blocks':>6} {'gradient':>10} {'temp':>9} {'args':>8} {'outputs':>8} "
          f"{'compile s':>9}")
    rows = {}
    for multiplier in multipliers:
        for reversible in (True, False):
            row = gradient_memory(args.config, args.batch_size, multiplier, reversible)
            rows[multiplier, reversible] = row
            print(f"{row['blocks']:>6} {'reversible' if reversible else 'plain':>10} "
                  f"{row['temp'] / MIB:9.1f} {row['args'] / MIB:8.1f} "
                  f"{row['outputs'] / MIB:8.1f} {row['compile_s']:9.1f}", flush=True)
    if len(multipliers) > 1:
        low, high = multipliers[0], multipliers[-1]
        for reversible in (True, False):
            growth = rows[high, reversible]["temp"] / rows[low, reversible]["temp"]
            print(f"temp x{high} / x{low} blocks, "
                  f"{'reversible' if reversible else 'plain'}: {growth:.2f}")
    return rows


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
