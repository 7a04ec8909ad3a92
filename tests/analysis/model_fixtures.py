"""Helpers of the analysis tests: their run configuration and a SavedModel export (the
identity-normalised twin of a model: tests.helpers.models).

The export is made here with exactly the signature names the project's exporter writes
(`encode`, `decode`, `encode_stages`, `serving_default`), so the SavedModel path is tested
independently of the exporter. The models take pixels (they carry their normalisation).
"""

import numpy as np
import tensorflow as tf

from irevnet_tf.model_files import RunConfig

MEAN = (80.0,)
STD = (100.0,)
IMAGE_SHAPE = (32, 32, 1)


def run_config(config_name="irevnet_tiny", image_shape=IMAGE_SHAPE, mean=MEAN, std=STD):
    """The RunConfig of the analysis tests' model directory (tests.helpers.write_model_dir)."""
    return RunConfig(config_name=config_name, overrides={"input_shape": list(image_shape)},
                     dataset="digits", image_size=image_shape[0], num_classes=10, mean=mean,
                     std=std)


def export_saved_model(model, export_dir, batch_size=None):
    """Exports `model` (pixels in, pixels out) with the serving signatures, like the
    exporter."""
    images_spec = tf.TensorSpec([batch_size, *model.image_shape], tf.float32, name="images")
    features_spec = tf.TensorSpec([batch_size, *model.phi_shape], model.phi_dtype,
                                  name="features")
    module = tf.Module()
    module.model = model
    module.fraction_bits = tf.Variable(model.grid.fraction_bits, trainable=False)

    @tf.function(input_signature=[images_spec])
    def encode(images):
        return {"features": model.encode(images)}

    @tf.function(input_signature=[features_spec])
    def decode(features):
        return {"images": model.decode(features)}

    @tf.function(input_signature=[images_spec])
    def encode_stages(images):
        outputs = model.intermediate_representations(images)
        return {f"stage_{index}": output for index, output in enumerate(outputs)}

    @tf.function(input_signature=[images_spec])
    def serving_default(images):
        logits = model(images, training=False)
        probabilities = tf.nn.softmax(logits)
        return {"logits": logits, "probabilities": probabilities,
                "classes": tf.argmax(logits, axis=-1, output_type=tf.int32),
                "scores": tf.reduce_max(probabilities, axis=-1)}

    module.encode, module.decode = encode, decode
    module.encode_stages, module.serving_default = encode_stages, serving_default
    tf.saved_model.save(module, str(export_dir), signatures={
        "encode": encode, "decode": decode, "encode_stages": encode_stages,
        "serving_default": serving_default})
    return str(export_dir)


def normalised(pixels):
    """Model inputs `(pixels - mean) / std` with the test normalisation."""
    return (np.asarray(pixels, np.float32) - np.float32(MEAN[0])) / np.float32(STD[0])
