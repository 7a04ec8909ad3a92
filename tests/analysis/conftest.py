"""Fixtures of the analysis tests: a tiny model, its model directory and its SavedModel export."""

import keras
import pytest

from irevnet_tf import build_irevnet
from tests.analysis.model_fixtures import IMAGE_SHAPE, MEAN, STD, export_saved_model, run_config
from tests.helpers import write_model_dir


@pytest.fixture(scope="session")
def tiny_model():
    """irevnet_tiny for 32x32 grey pixels (init_ds=2: 4 channels after psi), normalising
    them with MEAN/STD."""
    keras.utils.set_random_seed(1)
    return build_irevnet("irevnet_tiny", input_shape=IMAGE_SHAPE, pixel_mean=MEAN,
                         pixel_std=STD)


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_model, tmp_path_factory):
    return write_model_dir(tmp_path_factory.mktemp("model_dir"), tiny_model, run_config())


@pytest.fixture(scope="session")
def serving_base_dir(tiny_model, tmp_path_factory):
    """A TF Serving base directory: version 10 is the real export; version 9 holds a broken
    saved_model.pb, which a lexicographic ("9" > "10") choice would try and fail to load."""
    base = tmp_path_factory.mktemp("serving")
    export_saved_model(tiny_model, base / "10")
    (base / "9").mkdir()
    (base / "9" / "saved_model.pb").write_bytes(b"not a SavedModel")
    return str(base)
