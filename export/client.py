r"""Calls an i-RevNet served by TensorFlow Serving, over REST or gRPC.

    python export/client.py --server=localhost:8501 --signature=classify_image_bytes cat.jpg
    python export/client.py --protocol=grpc --server=localhost:8500 --signature=encode \
        --output=features.npz images.npy

Image files go to classify_image_bytes; .npy arrays (pixels in [0, 255], NHWC, or features
for decode) to the other signatures. `--output` saves the answer's arrays as .npz.
"""

from absl import flags

from irevnet_tf import cli

FLAGS = flags.FLAGS
flags.DEFINE_enum("protocol", "rest", ["rest", "grpc"], "REST (port 8501) or gRPC (8500).")
flags.DEFINE_string("server", "localhost:8501", "Server address (host:port or REST URL).")
flags.DEFINE_string("model_name", "irevnet", "TF Serving MODEL_NAME.")
flags.DEFINE_integer("model_version", None, "Version to address (default: the latest).",
                     lower_bound=1)
flags.DEFINE_enum("signature", "classify", ["classify", "serving_default",
                  "classify_image_bytes", "encode", "decode", "encode_stages"], "Signature.")
flags.DEFINE_float("timeout", 30.0, "Seconds per request.")
flags.register_validator("timeout", lambda seconds: seconds > 0,
                         message="must be a number of seconds > 0.")
flags.DEFINE_string("output", None, "Write the answer's arrays to this .npz file.")


def main(argv):
    from irevnet_tf.serving import client as client_lib  # Deferred: --help stays fast.
    from irevnet_tf.serving import client_inputs

    # Before the request, not after it; a PathFlagError leaves through cli.run (one line,
    # exit status 2).
    cli.check_file_flag("output", FLAGS.output)
    try:
        inputs = client_inputs.load_inputs(FLAGS.signature, argv[1:])
        client = client_lib.make_client(FLAGS.protocol, FLAGS.server,
                                        model_name=FLAGS.model_name,
                                        version=FLAGS.model_version, timeout=FLAGS.timeout)
        outputs = client.predict(client_inputs.signature_name(FLAGS.signature), inputs)
    except (client_lib.ServingError, FileNotFoundError, ImportError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    print(client_inputs.summarise(outputs))
    if FLAGS.output:
        try:
            client_inputs.save_outputs(FLAGS.output, outputs)
        except OSError as error:  # files.WriteError: one line naming the file.
            raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    cli.run(main)
