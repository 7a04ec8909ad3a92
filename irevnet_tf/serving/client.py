"""Clients for an i-RevNet served by TensorFlow Serving: REST (no extra dependency) and gRPC.

Both speak numpy: `encode(images)`, `decode(features)`, `classify(images)`,
`classify_image_bytes([jpeg_bytes, ...])`, `encode_stages(images)`, and the generic
`predict(signature_name, {input name: array})`. Pixels are float32 in [0, 255], NHWC.

    client = RestClient("http://localhost:8501", model_name="irevnet")
    features = client.encode(images)           # [N, h, w, c] int32 grid points
    images_back = client.decode(features)      # equals images up to float rounding
    top5 = client.classify_image_bytes([open("cat.jpg", "rb").read()])["classes"]

    client = GrpcClient("localhost:8500", model_name="irevnet")   # needs irevnet_tf[serving]

Errors (an unreachable server, a timeout, an HTTP error status or a gRPC status) raise
`ServingError` with the server's own message.
"""

import base64
import json
import socket
import urllib.error
import urllib.request

import numpy as np

from irevnet_tf.serving import signatures as names

DEFAULT_TIMEOUT = 30.0
# Large enough for a batch of 224x224 float images or their 7x7x3072 features.
DEFAULT_GRPC_MESSAGE_BYTES = 512 * 1024 * 1024


class ServingError(RuntimeError):
    """A request to TensorFlow Serving failed.

    Attributes:
        status: the HTTP status (REST) or gRPC status code name, None if there was no answer.
        server_message: the server's error message, if it sent one.
    """

    def __init__(self, message, status=None, server_message=None):
        super().__init__(message)
        self.status = status
        self.server_message = server_message


class ServingClient:
    """The signature-level calls shared by the REST and gRPC clients; subclasses implement
    `predict(signature_name, inputs) -> {output name: numpy array}`."""

    def predict(self, signature_name, inputs):
        raise NotImplementedError

    def classify(self, images):
        """`serving_default`: pixels -> {logits, probabilities, classes (top-k), scores}."""
        return self.predict(names.SERVING_DEFAULT, {names.IMAGES: _float_images(images)})

    def classify_image_bytes(self, encoded_images):
        """`classify_image_bytes`: a list of encoded JPEG/PNG files (bytes) -> as `classify`."""
        if isinstance(encoded_images, (bytes, bytearray)):
            encoded_images = [encoded_images]
        encoded_images = [bytes(item) for item in encoded_images]
        return self.predict(names.CLASSIFY_IMAGE_BYTES,
                            {names.IMAGE_BYTES: np.array(encoded_images, dtype=object)})

    def encode(self, images):
        """`encode`: pixels [N, H, W, C] in [0, 255] -> features Phi [N, h, w, c]."""
        return self.predict(names.ENCODE, {names.IMAGES: _float_images(images)})[names.FEATURES]

    def decode(self, features):
        """`decode`: features (int32 grid points from `encode`) -> pixels (float32, the
        exact inverse, not clipped to [0, 255])."""
        outputs = self.predict(names.DECODE, {names.FEATURES: _grid_points(features)})
        return outputs[names.IMAGES]

    def encode_stages(self, images):
        """`encode_stages`: pixels -> {stage_0: after the stem, ..., stage_K: Phi}."""
        return self.predict(names.ENCODE_STAGES, {names.IMAGES: _float_images(images)})


def _float_images(array, argument="images"):
    array = np.asarray(array)
    if array.ndim != 4:
        raise ValueError(f"`{argument}` must be a rank-4 NHWC array (batch, height, width, "
                         f"channels), got shape {array.shape}.")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"`{argument}` must hold numbers, got dtype {array.dtype}.")
    return array.astype(np.float32)


def _grid_points(array):
    array = np.asarray(array)
    if array.ndim != 4:
        raise ValueError(f"`features` must be a rank-4 NHWC array (batch, height, width, "
                         f"channels), got shape {array.shape}.")
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"`features` must be the int32 grid points that `encode` returns, got "
                        f"dtype {array.dtype}; round float features f to "
                        f"np.round(f * 2**fraction_bits) first.")
    return array.astype(np.int32)


def _output_array(name, value):
    array = np.asarray(value)
    if name in names.INTEGER_OUTPUTS:
        return array.astype(np.int32)
    if name in names.UINT8_OUTPUTS:
        return array.astype(np.uint8)
    if array.dtype.kind in "fiu":
        return array.astype(np.float32)
    return array


# --- REST ----------------------------------------------------------------------------------


def to_json_value(array):
    """A numpy array as TF Serving's JSON: nested lists, bytes as {"b64": ...}."""
    array = np.asarray(array)
    if array.dtype.kind in "OSa":
        flat = [{"b64": base64.b64encode(bytes(item)).decode("ascii")}
                for item in array.reshape(-1)]
        return np.array(flat, dtype=object).reshape(array.shape).tolist()
    return array.tolist()


class RestClient(ServingClient):
    """Calls TF Serving's REST API: POST /v1/models/<name>[/versions/<v>]:predict.

    Args:
        url: the server's REST address, e.g. "http://localhost:8501".
        model_name: TF Serving's MODEL_NAME.
        version: a model version to address, or None for the latest.
        timeout: seconds per request.
        request_format: "columnar" (`{"inputs": ...}`, answered with `{"outputs": ...}`) or
            "row" (`{"instances": [...]}`, answered with `{"predictions": [...]}`).
    """

    def __init__(self, url="http://localhost:8501", model_name="irevnet", version=None,
                 timeout=DEFAULT_TIMEOUT, request_format="columnar"):
        if request_format not in ("columnar", "row"):
            raise ValueError(f"RestClient: `request_format` must be 'columnar' or 'row', got "
                             f"{request_format!r}.")
        if not str(url).startswith(("http://", "https://")):
            url = "http://" + str(url)
        self.url = str(url).rstrip("/")
        self.model_name = model_name
        self.version = version
        self.timeout = timeout
        self.request_format = request_format

    @property
    def model_url(self):
        url = f"{self.url}/v1/models/{self.model_name}"
        if self.version is not None:
            url += f"/versions/{int(self.version)}"
        return url

    def status(self):
        """The model's version status (GET /v1/models/<name>), as parsed JSON."""
        return self._request(self.model_url, None)

    def predict(self, signature_name, inputs):
        inputs = {key: np.asarray(value) for key, value in inputs.items()}
        if self.request_format == "columnar":
            body = {"signature_name": signature_name,
                    "inputs": {key: to_json_value(value) for key, value in inputs.items()}}
        else:
            body = {"signature_name": signature_name, "instances": _rows(inputs)}
        answer = self._request(self.model_url + ":predict", body)
        if "outputs" in answer:
            return _columnar_outputs(answer["outputs"], signature_name)
        if "predictions" in answer:
            return _row_outputs(answer["predictions"], signature_name)
        raise ServingError(f"TF Serving at {self.model_url} answered without 'outputs' or "
                           f"'predictions': {str(answer)[:300]}")

    def _request(self, url, body):
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(
            url, data=data, method="GET" if body is None else "POST",
            headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                text = response.read().decode("utf-8")
        except urllib.error.HTTPError as error:
            message = _server_error_message(error)
            raise ServingError(f"TF Serving at {url} answered HTTP {error.code}: {message}",
                               status=error.code, server_message=message) from None
        except (socket.timeout, TimeoutError) as error:
            raise ServingError(f"TF Serving at {url} did not answer within {self.timeout} s "
                               f"({error}).") from None
        except urllib.error.URLError as error:
            if isinstance(error.reason, (socket.timeout, TimeoutError)):
                raise ServingError(f"TF Serving at {url} did not answer within "
                                   f"{self.timeout} s.") from None
            raise ServingError(f"Could not reach TF Serving at {url}: {error.reason}. Is the "
                               "server running, and is this its REST port (8501)?") from None
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            raise ServingError(f"TF Serving at {url} answered with something that is not "
                               f"JSON: {text[:300]!r}") from None


def _server_error_message(error):
    try:
        text = error.read().decode("utf-8", errors="replace")
    except OSError:
        return error.reason
    try:
        return json.loads(text).get("error", text)
    except (json.JSONDecodeError, AttributeError):
        return text or error.reason


def _rows(inputs):
    """Row format: one JSON object (or bare value, for a single input) per batch element."""
    sizes = {value.shape[0] if value.ndim else None for value in inputs.values()}
    if len(sizes) != 1 or None in sizes:
        raise ValueError("RestClient: the row format needs inputs with one shared batch "
                         f"dimension, got shapes { {k: v.shape for k, v in inputs.items()} }.")
    columns = {key: to_json_value(value) for key, value in inputs.items()}
    if len(columns) == 1:
        return next(iter(columns.values()))
    return [dict(zip(columns, row)) for row in zip(*columns.values())]


def _only_output_name(signature_name):
    """The output name of a single-output signature (TF Serving's JSON then drops the name)."""
    single = {names.ENCODE: names.FEATURES}
    return single.get(signature_name, "output")


def _columnar_outputs(outputs, signature_name):
    if isinstance(outputs, dict):
        return {key: _output_array(key, value) for key, value in outputs.items()}
    name = _only_output_name(signature_name)
    return {name: _output_array(name, outputs)}


def _row_outputs(predictions, signature_name):
    if predictions and isinstance(predictions[0], dict):
        return {key: _output_array(key, [row[key] for row in predictions])
                for key in predictions[0]}
    name = _only_output_name(signature_name)
    return {name: _output_array(name, predictions)}


# --- gRPC ----------------------------------------------------------------------------------


class GrpcClient(ServingClient):
    """Calls TF Serving's gRPC PredictionService.Predict (needs `irevnet_tf[serving]`).

    Args:
        target: the server's gRPC address, e.g. "localhost:8500".
        model_name, version, timeout: as for `RestClient`.
        max_message_bytes: the largest request or answer accepted.
    """

    def __init__(self, target="localhost:8500", model_name="irevnet", version=None,
                 timeout=DEFAULT_TIMEOUT, max_message_bytes=DEFAULT_GRPC_MESSAGE_BYTES):
        try:
            import grpc
            from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
        except ImportError as error:
            raise ImportError(f"GrpcClient needs grpcio and tensorflow-serving-api ({error}): "
                              "pip install 'irevnet_tf[serving]', or use RestClient.") from None
        self._grpc = grpc
        self._predict_pb2 = predict_pb2
        self.target = target
        self.model_name = model_name
        self.version = version
        self.timeout = timeout
        self._channel = grpc.insecure_channel(target, options=[
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes)])
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

    def predict(self, signature_name, inputs):
        import tensorflow as tf  # Deferred: TensorProto conversions only.

        request = self._predict_pb2.PredictRequest()
        request.model_spec.name = self.model_name
        request.model_spec.signature_name = signature_name
        if self.version is not None:
            request.model_spec.version.value = int(self.version)
        for key, value in inputs.items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(np.asarray(value)))
        try:
            response = self._stub.Predict(request, timeout=self.timeout)
        except self._grpc.RpcError as error:
            code = error.code()
            message = error.details()
            if code == self._grpc.StatusCode.DEADLINE_EXCEEDED:
                text = f"did not answer within {self.timeout} s"
            elif code == self._grpc.StatusCode.UNAVAILABLE:
                text = (f"is unavailable ({message}). Is the server running, and is this its "
                        "gRPC port (8500)?")
            else:
                text = f"answered {code.name}: {message}"
            raise ServingError(f"TF Serving at {self.target} {text}", status=code.name,
                               server_message=message) from None
        return {key: _output_array(key, tf.make_ndarray(proto))
                for key, proto in response.outputs.items()}

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def make_client(protocol, address, model_name="irevnet", version=None, timeout=DEFAULT_TIMEOUT):
    """A `RestClient` ("rest") or `GrpcClient` ("grpc") for `address`."""
    if protocol == "rest":
        return RestClient(address, model_name=model_name, version=version, timeout=timeout)
    if protocol == "grpc":
        return GrpcClient(address, model_name=model_name, version=version, timeout=timeout)
    raise ValueError(f"make_client: `protocol` must be 'rest' or 'grpc', got {protocol!r}.")
