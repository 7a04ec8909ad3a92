"""Encode in one loader, decode in another, bit for bit: Keras, the SavedModel in Python's
object loader, and the SavedModel in TensorFlow's graph-mode session loader.

Inference F runs its batch norms as fused kernels, which TensorFlow's graph optimiser
fuses further (batch norm + ReLU; in float32, convolution + batch norm + ReLU). The fusion
happens in every one of these loaders, so they compute the same F and a Phi from any of
them decodes exactly in any other. Pixels are on a grid of 1/256 (integers among them), so
that with a power-of-two std their normalised values lie on the stream's grid and the
round trip gives the very pixels back; Phi itself is compared between the loaders.
"""

import numpy as np
import pytest
import tensorflow as tf

from irevnet_tf import build_irevnet
from irevnet_tf import model_files as model_dir_lib
from irevnet_tf.serving import export as export_lib
from tests.helpers import randomize_batch_norms

MEAN, STD = (128.0, 120.0, 110.0), (64.0, 64.0, 64.0)
# irevnet_small: strided and injective blocks, and bottlenecks of 4, 16 and 64 channels
# (bfloat16 batch norms of 4 channels run their kernel in float32).
CONFIG = "irevnet_small"


def _grid_pixels(batch, size, seed):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256 * 256, (batch, size, size, 3)) / 256).astype(np.float32)


@pytest.fixture(scope="module", params=["float32", "mixed_bfloat16"])
def model_and_export(request, tmp_path_factory):
    model = build_irevnet(CONFIG, pixel_mean=MEAN, pixel_std=STD)
    randomize_batch_norms(model, seed=3)
    # The export runs one image at a time (its default inference_chunk=1, so that a server's
    # batching cannot move a bit); the Keras model does the same here.
    model = model.with_dtype_policy(request.param).with_inference_chunk(1)
    run_config = model_dir_lib.RunConfig(config_name=CONFIG, dataset="synthetic",
                                         image_size=32, num_classes=10, mean=MEAN, std=STD)
    version_dir = export_lib.export_saved_model(
        model, run_config, str(tmp_path_factory.mktemp("export")), warmup=False)
    return model, version_dir


def _session_run(version_dir, name, inputs):
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], version_dir)
        signature = meta_graph.signature_def[name]
        feeds = {signature.inputs[key].name: value for key, value in inputs.items()}
        fetches = {key: tensor.name for key, tensor in signature.outputs.items()}
        return session.run(fetches, feed_dict=feeds)


def test_phi_from_any_loader_decodes_exactly_in_any_other(model_and_export):
    model, version_dir = model_and_export
    pixels = _grid_pixels(4, 32, seed=0)
    pixels[0] = np.round(pixels[0])
    loaded = tf.saved_model.load(version_dir)

    phis = {
        "keras": model.encode(pixels).numpy(),
        "saved_model": loaded.signatures["encode"](images=tf.constant(pixels))["features"]
        .numpy(),
        "session": _session_run(version_dir, "encode", {"images": pixels})["features"],
    }
    decoders = {
        "keras": lambda phi: model.decode(phi).numpy(),
        "saved_model": lambda phi: loaded.signatures["decode"](
            features=tf.constant(phi))["images"].numpy(),
        "session": lambda phi: _session_run(version_dir, "decode",
                                            {"features": phi})["images"],
    }
    for name, phi in phis.items():
        assert phi.dtype == np.int32, name
        np.testing.assert_array_equal(phi, phis["keras"], err_msg=f"{name} encode != keras")
    for encoder, phi in phis.items():
        for decoder, decode in decoders.items():
            differing = int(np.sum(decode(phi) != pixels))
            assert differing == 0, (f"encode in {encoder}, decode in {decoder}: {differing} "
                                    f"pixel values differ")
