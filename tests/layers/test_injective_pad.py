"""InjectivePad: zeros appended at the end of the channels; inverse drops them."""

import numpy as np
import pytest
import tensorflow as tf

from irevnet_tf.layers import InjectivePad


def test_appends_zero_channels_at_the_end_and_inverts():
    x = np.random.default_rng(1).standard_normal((2, 3, 3, 3))
    pad = InjectivePad(5, dtype="float64")
    y = pad(tf.constant(x)).numpy()
    np.testing.assert_array_equal(y, np.concatenate([x, np.zeros((2, 3, 3, 5))], axis=-1))
    np.testing.assert_array_equal(pad.inverse(y).numpy(), x)


def test_zero_pad_is_identity_and_bad_arguments():
    x = tf.ones([1, 2, 2, 4])
    assert InjectivePad(0)(x) is x
    with pytest.raises(ValueError, match="pad"):
        InjectivePad(-1)
    with pytest.raises(ValueError, match="more than pad=4"):
        InjectivePad(4).inverse(tf.ones([1, 2, 2, 4]))


def test_config_round_trip():
    assert InjectivePad.from_config(InjectivePad(7).get_config()).pad == 7
