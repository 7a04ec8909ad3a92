"""TF Serving warm-up requests: `assets.extra/tf_serving_warmup_requests` in an export.

TensorFlow Serving replays these PredictionLog records when it loads a version, before it
marks the version available, so that the first real request does not pay for graph
initialisation. One small request per signature. The records are protocol buffers of the
`tensorflow-serving-api` package (install `irevnet_tf[serving]`).
"""

import os

import numpy as np
import tensorflow as tf

WARMUP_DIRECTORY = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"


def warmup_path(saved_model_dir):
    return os.path.join(saved_model_dir, WARMUP_DIRECTORY, WARMUP_FILE)


def require_serving_api():
    """Returns `(predict_pb2, prediction_log_pb2)`, or raises an ImportError saying what to do."""
    try:
        from tensorflow_serving.apis import predict_pb2, prediction_log_pb2
    except ImportError as error:
        raise ImportError(
            "Writing TF Serving warm-up requests needs the tensorflow-serving-api package "
            f"({error}). Install it with `pip install 'irevnet_tf[serving]'` (or `pip install "
            "tensorflow-serving-api` at your TensorFlow's version), or export without warm-up "
            "requests: --nowarmup (warmup=False).") from None
    return predict_pb2, prediction_log_pb2


def prediction_logs(inputs_by_signature, model_name):
    """One PredictionLog (a PredictRequest) per signature.

    Args:
        inputs_by_signature: `{signature name: {input name: numpy array}}`.
        model_name: the name TF Serving serves the model under (MODEL_NAME).
    """
    predict_pb2, prediction_log_pb2 = require_serving_api()
    logs = []
    for signature_name, inputs in sorted(inputs_by_signature.items()):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.model_spec.signature_name = signature_name
        for input_name, value in inputs.items():
            request.inputs[input_name].CopyFrom(tf.make_tensor_proto(np.asarray(value)))
        logs.append(prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request)))
    return logs


def write_warmup_file(saved_model_dir, inputs_by_signature, model_name):
    """Writes the warm-up records into `<saved_model_dir>/assets.extra/`; returns the file path."""
    logs = prediction_logs(inputs_by_signature, model_name)
    path = warmup_path(saved_model_dir)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
    return path


def read_warmup_file(path):
    """The PredictionLog records of a warm-up file (for checks and tests)."""
    _, prediction_log_pb2 = require_serving_api()
    logs = []
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(record)
        logs.append(log)
    return logs
