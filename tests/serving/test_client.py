"""The REST and gRPC clients against a local stand-in for TF Serving that runs the exported
SavedModel (tests/serving/stand_in_server.py), checked against the Keras model and numpy."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from irevnet_tf.serving import client_inputs
from irevnet_tf.serving.client import GrpcClient, RestClient, ServingError, to_json_value
from tests.helpers.models import identity_twin
from tests.helpers.processes import ROOT, free_port, python_env
from tests.serving.helpers import encode_image, normalise_numpy, pixels, softmax_numpy
from tests.serving.stand_in_server import StandInServing

TIMEOUT = 60.0
CLIENT_KINDS = ["rest-columnar", "rest-row", "grpc"]


@pytest.fixture(scope="module")
def server(exported):
    with StandInServing(exported, model_name="irevnet", version=1) as stand_in:
        yield stand_in


def make(server, kind, **kwargs):
    if kind == "grpc":
        return GrpcClient(server.grpc_target, timeout=TIMEOUT, **kwargs)
    return RestClient(server.rest_url, timeout=TIMEOUT, request_format=kind.split("-")[1],
                      **kwargs)


@pytest.fixture(params=CLIENT_KINDS)
def client(server, request):
    return make(server, request.param)


def test_encode_and_decode(client, trained):
    model, _ = trained
    images = pixels(2, seed=20)
    features = client.encode(images)
    assert features.dtype == np.int32 and features.shape == (2, 4, 4, 192)
    # The served Phi is Python's up to F's rounding in the export's graph.
    expected = identity_twin(model).encode(normalise_numpy(images)).numpy()
    assert np.abs(features - expected).max() <= 4
    back = client.decode(features)
    assert back.dtype == np.float32
    assert np.max(np.abs(back - images)) < 1e-5 * 255.0
    with pytest.raises(TypeError, match="int32 grid points"):
        client.decode(features.astype(np.float32))


def test_classify(client, trained):
    model, _ = trained
    images = pixels(3, seed=21)
    outputs = client.classify(images)
    logits = identity_twin(model)(normalise_numpy(images), training=False).numpy()
    np.testing.assert_allclose(outputs["logits"], logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(outputs["probabilities"], softmax_numpy(logits), atol=1e-6)
    assert outputs["classes"].dtype == np.int32 and outputs["classes"].shape == (3, 5)
    np.testing.assert_array_equal(outputs["classes"][:, 0], np.argmax(logits, axis=-1))


def test_classify_image_bytes(client, trained):
    model, _ = trained
    rng = np.random.default_rng(22)
    photos = [rng.integers(0, 256, (37, 37, 3)).astype(np.uint8) for _ in range(2)]
    outputs = client.classify_image_bytes([encode_image(photo) for photo in photos])
    # 37x37: the 87.5 % centre crop is rows and columns 3..34, already 32x32.
    cropped = np.stack([photo[3:35, 3:35] for photo in photos]).astype(np.float32)
    np.testing.assert_allclose(outputs["logits"],
                               identity_twin(model)(normalise_numpy(cropped)).numpy(),
                               rtol=1e-5, atol=1e-5)


def test_encode_stages(client):
    images = pixels(1, seed=23)
    stages = client.encode_stages(images)
    assert sorted(stages) == ["stage_0", "stage_1", "stage_2", "stage_3"]
    assert stages["stage_0"].shape == (1, 16, 16, 12)
    np.testing.assert_allclose(stages["stage_3"], client.encode(images), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", CLIENT_KINDS)
def test_wrong_shape_is_an_error_with_the_server_message(server, kind):
    client = make(server, kind)
    with pytest.raises(ServingError) as caught:
        client.encode(np.zeros((1, 16, 16, 3), np.float32))
    assert caught.value.status in (400, "INVALID_ARGUMENT")
    assert "[1,16,16,3]" in str(caught.value) and "[?,32,32,3]" in str(caught.value)


@pytest.mark.parametrize("kind", CLIENT_KINDS)
def test_bytes_that_are_not_an_image(server, kind):
    with pytest.raises(ServingError, match="not an encoded JPEG, PNG"):
        make(server, kind).classify_image_bytes([b"<html>not an image</html>"])


def test_rest_model_and_version_addressing(server):
    assert make(server, "rest-columnar", version=1).encode(pixels(1)).shape == (1, 4, 4, 192)
    assert RestClient(server.rest_url).status()["model_version_status"][0]["state"] == "AVAILABLE"
    for kwargs in (dict(version=9), dict(model_name="other")):
        with pytest.raises(ServingError, match="HTTP 404: Servable not found") as caught:
            make(server, "rest-columnar", **kwargs).encode(pixels(1))
        assert caught.value.status == 404


def test_grpc_unknown_model(server):
    with pytest.raises(ServingError, match="NOT_FOUND") as caught:
        make(server, "grpc", model_name="other").encode(pixels(1))
    assert caught.value.status == "NOT_FOUND"


def test_rest_timeout():
    silent = socket.socket()  # Accepts connections (in the kernel) and never answers.
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    try:
        client = RestClient(f"127.0.0.1:{silent.getsockname()[1]}", timeout=0.5)
        with pytest.raises(ServingError, match="did not answer within 0.5 s"):
            client.encode(pixels(1))
    finally:
        silent.close()


def test_unreachable_servers():
    port = free_port()
    with pytest.raises(ServingError, match="Could not reach TF Serving.*8501"):
        RestClient(f"http://127.0.0.1:{port}", timeout=5).encode(pixels(1))
    with pytest.raises(ServingError, match="UNAVAILABLE|unavailable|did not answer"):
        GrpcClient(f"127.0.0.1:{port}", timeout=5).encode(pixels(1))


def test_client_checks_arrays_before_sending():
    client = RestClient("http://127.0.0.1:1")
    with pytest.raises(ValueError, match="rank-4"):
        client.encode(np.zeros((32, 32, 3)))
    with pytest.raises(TypeError, match="numbers"):
        client.encode(np.array([[[["a"]]]]))
    with pytest.raises(ValueError, match="request_format"):
        RestClient(request_format="xml")


def test_json_values_follow_the_wire_format():
    assert to_json_value(np.array([b"\x00\xff"], dtype=object)) == [{"b64": "AP8="}]
    assert to_json_value(np.array([[1.5, 2.0]], np.float32)) == [[1.5, 2.0]]


def test_client_inputs_from_files(tmp_path):
    png = tmp_path / "a.png"
    png.write_bytes(encode_image(np.zeros((8, 8, 3), np.uint8)))
    inputs = client_inputs.load_inputs("classify_image_bytes", [str(png)])
    assert inputs["image_bytes"].shape == (1,) and inputs["image_bytes"][0][:4] == b"\x89PNG"
    np.save(tmp_path / "one.npy", np.ones((32, 32, 3)))
    np.save(tmp_path / "two.npy", np.zeros((2, 32, 32, 3)))
    images = client_inputs.load_inputs("encode", [str(tmp_path / "one.npy"),
                                                  str(tmp_path / "two.npy")])["images"]
    assert images.shape == (3, 32, 32, 3) and images.dtype == np.float32
    np.save(tmp_path / "phi.npy", np.ones((4, 4, 192), np.int32))
    features = client_inputs.load_inputs("decode", [str(tmp_path / "phi.npy")])["features"]
    assert features.dtype == np.int32 and features.shape == (1, 4, 4, 192)
    with pytest.raises(ValueError, match="int32 grid points"):
        client_inputs.load_inputs("decode", [str(tmp_path / "one.npy")])
    with pytest.raises(ValueError, match="takes .npy arrays"):
        client_inputs.load_inputs("encode", [str(png)])
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        client_inputs.load_inputs("encode", [str(tmp_path / "missing.npy")])
    with pytest.raises(ValueError, match="signature"):
        client_inputs.load_inputs("nonsense", [str(png)])
    summary = client_inputs.summarise({"classes": np.array([[3, 1]]),
                                       "scores": np.array([[0.75, 0.25]])})
    assert summary == "image 0: top classes 3 (0.750), 1 (0.250)"
    client_inputs.save_outputs(str(tmp_path / "out" / "o.npz"), {"x": np.arange(3)})
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "o.npz")["x"], np.arange(3))


@pytest.mark.parametrize("protocol", ["rest", pytest.param("grpc", marks=pytest.mark.slow)])
def test_client_command_line(server, tmp_path, protocol):
    rng = np.random.default_rng(24)
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(encode_image(rng.integers(0, 256, (48, 40, 3)), "JPEG"))
    address = server.rest_url if protocol == "rest" else server.grpc_target
    script = os.path.join(ROOT, "export", "client.py")
    result = subprocess.run(
        [sys.executable, script, f"--protocol={protocol}", f"--server={address}",
         "--signature=classify_image_bytes", f"--output={tmp_path / 'out.npz'}", str(photo)],
        cwd=str(tmp_path), env=python_env(), timeout=300, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = make(server, "rest-columnar").classify_image_bytes([photo.read_bytes()])
    saved = np.load(tmp_path / "out.npz")
    np.testing.assert_array_equal(saved["classes"], expected["classes"])
    assert result.stdout.startswith("image 0: top classes " + str(expected["classes"][0, 0]))
