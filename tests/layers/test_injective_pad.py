"""InjectivePad: zeros appended at the end of the channels; inverse drops them (every backend)."""

import numpy as np
import pytest
from keras import ops

from irevnet_tf.layers import InjectivePad
from tests.helpers import to_numpy


def test_appends_zero_channels_at_the_end_and_inverts():
    # float32 values: every backend holds them exactly (JAX's float64 is float32 by default).
    x = np.random.default_rng(1).standard_normal((2, 3, 3, 3)).astype(np.float32).astype(
        np.float64)
    pad = InjectivePad(5, dtype="float64")
    y = to_numpy(pad(ops.convert_to_tensor(x, "float64")))
    np.testing.assert_array_equal(y, np.concatenate([x, np.zeros((2, 3, 3, 5))], axis=-1))
    np.testing.assert_array_equal(to_numpy(pad.inverse(ops.convert_to_tensor(y, "float64"))), x)


def test_zero_pad_is_identity_and_bad_arguments():
    x = ops.ones([1, 2, 2, 4])
    assert InjectivePad(0)(x) is x
    with pytest.raises(ValueError, match="pad"):
        InjectivePad(-1)
    with pytest.raises(ValueError, match="more than pad=4"):
        InjectivePad(4).inverse(ops.ones([1, 2, 2, 4]))


def test_config_round_trip():
    assert InjectivePad.from_config(InjectivePad(7).get_config()).pad == 7
