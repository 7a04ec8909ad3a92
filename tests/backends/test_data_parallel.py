"""JAX data parallelism: `keras.distribution.DataParallel` over two CPU devices applies the
update one device applies to the same global batch.

Both runs are JAX child processes with two host devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=2`, read when JAX starts): the first
trains one `fit` step on one device from fresh weights and writes them before and after;
the second sets `DataParallel` over both devices, loads the same initial weights and
trains the same step on the same global batch of 8 (4 per device).

Batch norm: Keras' JAX trainer runs the step as one `jax.jit` program over the global
batch, sharded on its batch axis; the batch statistics are means over that global batch
(XLA adds the cross-device sums), not per-device ones. So the moving statistics, which a
training step moves by (1 - momentum) x the batch statistics, must match too, which they
would not if each device normalised its own 4 images.
"""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.helpers.processes import python_env, require_backends

STEP = textwrap.dedent("""
    import sys
    import jax
    import keras
    import numpy as np
    from irevnet_tf.model import IRevNet

    mode, directory = sys.argv[1:3]
    assert keras.backend.backend() == "jax" and len(jax.devices("cpu")) == 2
    if mode == "parallel":
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=keras.distribution.list_devices("cpu")))
    keras.utils.set_random_seed(0)
    model = IRevNet(blocks=(1, 1), strides=(1, 2), channels=(6, 24), init_ds=2,
                    input_shape=(16, 16, 3), num_classes=10)
    if mode == "parallel":
        with np.load(directory + "/before.npz") as saved:
            model.set_weights([saved[f"arr_{i}"] for i in range(len(saved.files))])
        devices = {d for v in model.variables for d in v.value.sharding.device_set}
        assert len(devices) == 2, devices  # Replicated on both devices.
    else:
        np.savez(directory + "/before.npz", *[np.array(v) for v in model.weights])
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, (8, 16, 16, 3)).astype("float32")
    y = rng.integers(0, 10, 8)
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    np.savez(f"{directory}/after_{mode}.npz", *[np.array(v) for v in model.weights])
""")


def _weights(path):
    with np.load(path) as archive:
        return [archive[f"arr_{i}"] for i in range(len(archive.files))]


@pytest.mark.slow
def test_data_parallel_step_equals_the_single_device_step(tmp_path):
    require_backends("jax")
    env = python_env(KERAS_BACKEND="jax",
                     XLA_FLAGS="--xla_force_host_platform_device_count=2")
    for mode in ("single", "parallel"):
        result = subprocess.run([sys.executable, "-c", STEP, mode, str(tmp_path)], env=env,
                                capture_output=True, text=True, timeout=600, check=False)
        assert result.returncode == 0, f"{mode}:\n{result.stderr[-4000:]}"
    before = _weights(tmp_path / "before.npz")
    single = _weights(tmp_path / "after_single.npz")
    parallel = _weights(tmp_path / "after_parallel.npz")
    assert len(before) == len(single) == len(parallel)
    moved = 0
    for index, (start, one, two) in enumerate(zip(before, single, parallel)):
        step = np.linalg.norm(one.astype(np.float64) - start)
        moved += step > 0
        gap = np.linalg.norm(two.astype(np.float64) - one)
        # float32: the two programs sum the batch in different orders.
        assert gap <= 1e-5 * max(np.linalg.norm(one.astype(np.float64)), 1e-30), index
        assert gap <= 1e-3 * step or step == 0 and gap == 0, index
    # The step moved the kernels, the batch norms' gamma/beta and moving statistics.
    assert moved >= len(before) // 2, (moved, len(before))
