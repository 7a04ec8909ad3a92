"""Shared fixtures of the serving tests: a small trained-looking model, its model directory
(as the trainer writes it) and one export of it."""

import numpy as np
import pytest

from irevnet_tf import build_irevnet
from irevnet_tf.serving import export as export_lib
from irevnet_tf import model_files as model_dir_lib
from tests.helpers import randomize_batch_norms, write_model_dir
from tests.serving.helpers import MEAN, STD


@pytest.fixture(scope="session")
def trained():
    """`(model, run_config)`: irevnet_tiny (32x32x3 -> 4x4x192, 10 classes)."""
    model = build_irevnet("irevnet_tiny", pixel_mean=MEAN, pixel_std=STD)
    randomize_batch_norms(model, seed=0)
    # A non-zero classifier bias too, so that logits do not sum to what the kernel gives.
    bias = model.classifier.bias
    bias.assign(np.random.default_rng(0).normal(0.0, 0.5, bias.shape).astype(np.float32))
    run_config = model_dir_lib.RunConfig(config_name="irevnet_tiny", dataset="synthetic",
                                         image_size=32, num_classes=10, mean=MEAN, std=STD)
    return model, run_config


@pytest.fixture(scope="session")
def model_dir(trained, tmp_path_factory):
    model, run_config = trained
    return write_model_dir(str(tmp_path_factory.mktemp("model_dir")), model, run_config)


@pytest.fixture(scope="session")
def exported(trained, tmp_path_factory):
    """The version directory of one export of the `trained` model (in memory, so that the
    signature tests compare against weights known to be the exported ones)."""
    model, run_config = trained
    return export_lib.export_saved_model(model, run_config,
                                         str(tmp_path_factory.mktemp("exports")))
