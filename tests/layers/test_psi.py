"""Psi: space-to-depth against an explicit numpy indexing, exact inverse, clear errors (every backend)."""

import keras
import numpy as np
import pytest
from keras import ops

from irevnet_tf.layers import Psi
from tests import reference
from tests.helpers import to_numpy


@pytest.mark.parametrize("block_size,shape", [(2, (2, 4, 6, 3)), (2, (1, 8, 8, 5)),
                                              (3, (2, 6, 9, 2)), (1, (1, 3, 5, 7))])
def test_forward_matches_numpy_indexing_and_inverse_is_exact(block_size, shape):
    # float32 values: every backend holds them exactly (JAX's float64 is float32 by default).
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32).astype(np.float64)
    psi = Psi(block_size, dtype="float64")
    y = psi(ops.convert_to_tensor(x, "float64"))
    np.testing.assert_array_equal(to_numpy(y), reference.space_to_depth(x, block_size))
    np.testing.assert_array_equal(to_numpy(psi.inverse(y)), x)


def test_ordering_of_one_hand_written_block():
    # One 2x2 block with two channels: out[0,0,0,(i*2+j)*2+c] = in[0,i,j,c].
    x = np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2)
    y = to_numpy(Psi(2)(x)).ravel()
    expected = [x[0, i, j, c] for i in range(2) for j in range(2) for c in range(2)]
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("shape", [(1, 5, 4, 3), (1, 4, 7, 3)])
def test_sizes_psi_cannot_divide_are_an_error_not_a_crop(shape):
    with pytest.raises(ValueError, match=r"inputs.*multiples of 2"):
        Psi(2)(ops.zeros(shape))


def test_bad_arguments():
    with pytest.raises(ValueError, match="block_size"):
        Psi(0)
    with pytest.raises(ValueError, match="rank-4"):
        Psi(2)(ops.zeros([4, 4, 3]))
    with pytest.raises(ValueError, match="block_size\\*\\*2"):
        Psi(2).inverse(ops.zeros([1, 2, 2, 6]))


def test_config_round_trip():
    psi = Psi(3, name="p")
    clone = Psi.from_config(psi.get_config())
    assert clone.block_size == 3 and clone.name == "p"
    assert keras.saving.get_registered_object("irevnet_tf>Psi") is Psi
