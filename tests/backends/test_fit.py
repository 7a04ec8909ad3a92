"""`model.fit` trains a small IRevNet on the active Keras backend (tests/conftest.py): two
epochs on random data give a finite loss and change the weights, with plain autodiff
(`reversible=False`) and with the memory-saving gradient (`reversible=True`).

The memory-saving gradient is one module per backend (`irevnet_tf.backends.<backend>_gradient`,
dispatched to by `irevnet_tf.stack.run_memory_saving`).
"""

import keras
import numpy as np
import pytest

from irevnet_tf import IRevNet
from tests.helpers import randomize_batch_norms, to_numpy

# Injective (3 channels padded to 4 per half), one stride-2 stage, dropout on.
SMALL = dict(blocks=(1, 1), strides=(1, 2), channels=(4, 16), init_ds=0, mult=2,
             dropout_rate=0.1, num_classes=3, input_shape=(8, 8, 3))


def _data(count=16):
    rng = np.random.default_rng(0)
    images = rng.standard_normal((count, *SMALL["input_shape"])).astype(np.float32)
    labels = rng.integers(0, SMALL["num_classes"], count)
    return images, labels


@pytest.mark.parametrize("reversible", [
    pytest.param(False, id="plain_autodiff"),
    pytest.param(True, id="memory_saving"),
])
def test_fit_trains(reversible):
    keras.utils.set_random_seed(2)
    model = IRevNet(reversible=reversible, seed=3, **SMALL)
    randomize_batch_norms(model, seed=4)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = {v.path: to_numpy(v) for v in model.trainable_variables}
    moving = {v.path: to_numpy(v) for v in model.non_trainable_variables
              if "moving" in v.path}
    assert before and moving
    images, labels = _data()
    history = model.fit(images, labels, epochs=2, batch_size=8, verbose=0)
    losses = history.history["loss"]
    assert len(losses) == 2 and np.all(np.isfinite(losses)), losses
    after = {v.path: to_numpy(v) for v in model.trainable_variables}
    changed = {path for path in before if not np.array_equal(before[path], after[path])}
    # The gradient reaches every block (the stream's straight-through rounding passes it
    # through) and the head. Not every variable: the injective first block's F reads the
    # padding's zeros (x2 is channels 4-7 of 3 image channels padded to 8), so its first
    # convolution and batch norm have no gradient.
    owners = {path.split("/")[1] for path in before}
    assert {path.split("/")[1] for path in changed} == owners, owners
    assert len(changed) >= len(before) - 2, sorted(set(before) - changed)
    for variable in model.non_trainable_variables:
        if variable.path in moving:
            assert not np.array_equal(to_numpy(variable), moving[variable.path]), (
                f"{variable.path}: training did not update the moving statistics")
            assert np.all(np.isfinite(to_numpy(variable)))
    # The trained model still inverts exactly (its own inference path).
    phi = model.encode(images[:2])
    decoded = to_numpy(model.decode(phi))
    grid = 2.0 ** model.grid.fraction_bits
    np.testing.assert_array_equal(decoded, np.round(images[:2].astype(np.float64) * grid) / grid)
