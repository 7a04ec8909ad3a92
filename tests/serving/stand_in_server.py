"""A stand-in for TensorFlow Serving in tests: its REST and gRPC predict APIs over a SavedModel.

It follows TF Serving's documented wire formats: POST /v1/models/<name>[/versions/<v>]:predict
with {"signature_name", "instances"} (row) or {"inputs"} (columnar), {"b64": ...} for binary
values, answers {"predictions": ...} or {"outputs": ...} (a single output without its name),
{"error": ...} with HTTP 400 for bad requests and 404 for an unknown model or version; gRPC
PredictionService.Predict with TensorProtos, INVALID_ARGUMENT or NOT_FOUND statuses. Bound to
127.0.0.1 on an ephemeral port, served from daemon threads, with socket timeouts.
"""

import base64
import http.server
import json
import re
import threading
from concurrent import futures

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

_PREDICT_PATH = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?(:predict)?$")


class BadRequest(Exception):
    """A request TF Serving would refuse: `status` is the HTTP status, the message its error."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


class SavedModelRunner:
    """Runs a SavedModel's signatures on numpy inputs, as TF Serving's predict does."""

    def __init__(self, saved_model_dir, model_name, version):
        self.loaded = tf.saved_model.load(saved_model_dir)
        self.model_name = model_name
        self.version = version

    def check_model(self, name, version):
        if name != self.model_name:
            raise BadRequest(f"Servable not found for request: Latest({name})", status=404)
        if version is not None and int(version) != self.version:
            raise BadRequest(f"Servable not found for request: Specific({name}, {version})",
                             status=404)

    def input_specs(self, signature_name):
        if signature_name not in self.loaded.signatures:
            raise BadRequest(f"Serving signature name: \"{signature_name}\" not found in "
                             "signature def")
        return self.loaded.signatures[signature_name].structured_input_signature[1]

    def run(self, signature_name, inputs):
        specs = self.input_specs(signature_name)
        if set(inputs) != set(specs):
            raise BadRequest(f"Expected inputs {sorted(specs)}, got {sorted(inputs)}")
        tensors = {}
        for key, value in inputs.items():
            try:
                tensors[key] = tf.constant(value, dtype=specs[key].dtype)
            except (TypeError, ValueError) as error:
                raise BadRequest(f"Input {key!r}: {error}") from None
        try:
            outputs = self.loaded.signatures[signature_name](**tensors)
        except (tf.errors.OpError, ValueError, TypeError) as error:
            message = getattr(error, "message", None) or str(error)
            raise BadRequest(message) from None
        return {key: value.numpy() for key, value in outputs.items()}


def _decode_b64(value):
    if isinstance(value, dict):
        if set(value) != {"b64"}:
            raise BadRequest(f"JSON object {value!r}: only {{\"b64\": ...}} objects are values")
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_decode_b64(item) for item in value]
    return value


def _json_value(name, array):
    if array.dtype.kind in "OSa":
        if name.endswith("_bytes"):
            flat = [{"b64": base64.b64encode(item).decode("ascii")} for item in array.ravel()]
        else:
            flat = [item.decode("utf-8") for item in array.ravel()]
        return np.array(flat, dtype=object).reshape(array.shape).tolist()
    return array.tolist()


def parse_predict_body(body, runner):
    """`(signature name, inputs, row format?)` from a predict request's JSON."""
    try:
        request = json.loads(body)
    except json.JSONDecodeError as error:
        raise BadRequest(f"JSON Parse error: {error}") from None
    if not isinstance(request, dict):
        raise BadRequest("Request must be a JSON object")
    signature_name = request.get("signature_name", "serving_default")
    if ("instances" in request) == ("inputs" in request):
        raise BadRequest("Missing 'inputs' or 'instances' key" if "instances" not in request
                         else "Both 'inputs' and 'instances' keys are present")
    specs = runner.input_specs(signature_name)
    if "instances" in request:
        instances = request["instances"]
        if not isinstance(instances, list):
            raise BadRequest("'instances' must be a list")
        if instances and isinstance(instances[0], dict) and set(instances[0]) != {"b64"}:
            inputs = {key: [_decode_b64(row[key]) for row in instances] for key in instances[0]}
        elif len(specs) == 1:
            inputs = {next(iter(specs)): _decode_b64(instances)}
        else:
            raise BadRequest("Signature takes several inputs: instances must be objects")
        return signature_name, inputs, True
    columns = request["inputs"]
    if isinstance(columns, dict) and not set(columns) == {"b64"}:
        inputs = {key: _decode_b64(value) for key, value in columns.items()}
    elif len(specs) == 1:
        inputs = {next(iter(specs)): _decode_b64(columns)}
    else:
        raise BadRequest("Signature takes several inputs: 'inputs' must be an object")
    return signature_name, inputs, False


def format_predict_answer(outputs, row_format):
    if row_format:
        names = sorted(outputs)
        batch = len(next(iter(outputs.values())))
        columns = {name: _json_value(name, outputs[name]) for name in names}
        if len(names) == 1:
            return {"predictions": columns[names[0]]}
        return {"predictions": [{name: columns[name][i] for name in names}
                                for i in range(batch)]}
    if len(outputs) == 1:
        name, value = next(iter(outputs.items()))
        return {"outputs": _json_value(name, value)}
    return {"outputs": {name: _json_value(name, value) for name, value in outputs.items()}}


def _rest_handler(runner):
    class Handler(http.server.BaseHTTPRequestHandler):
        timeout = 30  # Seconds a connection may idle: no test hangs on a stuck client.

        def _answer(self, status, payload):
            body = json.dumps(payload).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            match = _PREDICT_PATH.match(self.path)
            try:
                if not match or match.group(3):
                    raise BadRequest("Malformed request: GET " + self.path, status=404)
                runner.check_model(match.group(1), match.group(2))
            except BadRequest as error:
                return self._answer(error.status, {"error": str(error)})
            self._answer(200, {"model_version_status": [{
                "version": str(runner.version), "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""}}]})

        def do_POST(self):
            match = _PREDICT_PATH.match(self.path)
            try:
                if not match or not match.group(3):
                    raise BadRequest("Malformed request: POST " + self.path, status=404)
                runner.check_model(match.group(1), match.group(2))
                length = int(self.headers.get("Content-Length", 0))
                signature_name, inputs, row_format = parse_predict_body(
                    self.rfile.read(length), runner)
                outputs = runner.run(signature_name, inputs)
            except BadRequest as error:
                return self._answer(error.status, {"error": str(error)})
            self._answer(200, format_predict_answer(outputs, row_format))

        def log_message(self, *args):  # Quiet test output.
            pass

    return Handler


class _PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, runner):
        self.runner = runner

    def Predict(self, request, context):
        spec = request.model_spec
        try:
            self.runner.check_model(spec.name,
                                    spec.version.value if spec.HasField("version") else None)
            inputs = {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}
            outputs = self.runner.run(spec.signature_name or "serving_default", inputs)
        except BadRequest as error:
            code = (grpc.StatusCode.NOT_FOUND if error.status == 404
                    else grpc.StatusCode.INVALID_ARGUMENT)
            context.abort(code, str(error))
        response = predict_pb2.PredictResponse()
        response.model_spec.name = spec.name
        response.model_spec.signature_name = spec.signature_name or "serving_default"
        response.model_spec.version.value = self.runner.version
        for key, value in outputs.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
        return response


class StandInServing:
    """REST and gRPC servers over one SavedModel version; use as a context manager.

    Attributes after `start()`: `rest_url` ("http://127.0.0.1:<port>"), `grpc_target`.
    """

    def __init__(self, saved_model_dir, model_name="irevnet", version=1):
        self.runner = SavedModelRunner(saved_model_dir, model_name, version)
        self._http = None
        self._grpc = None
        self._thread = None

    def start(self):
        self._http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _rest_handler(self.runner))
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()
        self.rest_url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=2), options=[
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024)])
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            _PredictionService(self.runner), self._grpc)
        port = self._grpc.add_insecure_port("127.0.0.1:0")
        self._grpc.start()
        self.grpc_target = f"127.0.0.1:{port}"
        return self

    def stop(self):
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._thread.join(timeout=10)
        if self._grpc is not None:
            self._grpc.stop(grace=1).wait(timeout=10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
