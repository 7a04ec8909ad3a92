"""The warm-up file: PredictionLog records, one per signature, that TF Serving can replay."""

import numpy as np
import pytest
import tensorflow as tf

from irevnet_tf.serving import warmup as warmup_lib


@pytest.fixture(scope="module")
def logs(exported):
    return warmup_lib.read_warmup_file(warmup_lib.warmup_path(exported))


def test_one_predict_request_per_signature(logs, exported):
    loaded = tf.saved_model.load(exported)
    assert all(log.WhichOneof("log_type") == "predict_log" for log in logs)
    requests = [log.predict_log.request for log in logs]
    assert sorted(r.model_spec.signature_name for r in requests) == sorted(loaded.signatures)
    assert {r.model_spec.name for r in requests} == {"irevnet"}
    for request in requests:
        specs = loaded.signatures[request.model_spec.signature_name].structured_input_signature[1]
        assert sorted(request.inputs) == sorted(specs)
        for key, proto in request.inputs.items():
            assert tf.dtypes.as_dtype(proto.dtype) == specs[key].dtype
            value = tf.make_ndarray(proto)
            assert specs[key].shape.is_compatible_with(value.shape)
            assert value.shape[0] == 1  # A small batch.


def test_requests_run_against_the_export(logs, exported):
    """Replays every request as TF Serving does on load: each must succeed."""
    loaded = tf.saved_model.load(exported)
    for log in logs:
        request = log.predict_log.request
        inputs = {key: tf.constant(tf.make_ndarray(proto))
                  for key, proto in request.inputs.items()}
        outputs = loaded.signatures[request.model_spec.signature_name](**inputs)
        assert all(np.all(np.isfinite(v.numpy())) for v in outputs.values()
                   if v.dtype.is_floating)


def test_images_are_in_the_pixel_range(logs):
    for log in logs:
        request = log.predict_log.request
        if "images" in request.inputs:
            images = tf.make_ndarray(request.inputs["images"])
            assert images.min() >= 0.0 and images.max() <= 255.0 and images.std() > 10.0
