"""The reversible gradient against plain autodiff, and both against float64 autodiff.

The reversible gradient rebuilds every block's input from its output; on the exact integer
stream the rebuild is the forward's pair bit for bit, so the reversible gradient should
equal plain autodiff's (same straight-through rounding) up to the order of float sums, in
float32 and under mixed precision alike. `gradient_errors` measures, on the same weights and
batch, the reversible gradient against the plain one, and each against a float64
plain-autodiff reference (which shows what the precision itself costs):

- `relative_error`: ||g - g64|| / ||g64|| over all trainable variables concatenated;
- `worst_variable_error` (and `worst_variable`): the largest per-variable
  ||g_v - g64_v|| / ||g64_v||, which is dominated by variables whose gradient is tiny.

Dropout is switched off (float32 and float64 draw different dropout masks from one seed).
"""

import keras
import numpy as np
import tensorflow as tf

from irevnet_tf.benchmarking import round_trip, train_step
from irevnet_tf.benchmarking.trained_like import randomize_batch_norms  # noqa: F401
from irevnet_tf.model import IRevNet


def loss_gradients(model, images, labels):
    """Gradients of the mean cross-entropy with respect to the trainable variables."""
    with tf.GradientTape() as tape:
        logits = model(images, training=True)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
            labels, logits, from_logits=True))
    return [np.asarray(g, np.float64) for g in tape.gradient(loss, model.trainable_variables)]


def compare_gradients(names, gradients, reference):
    """Relative error of the concatenation and the worst per-variable relative error."""
    flat = np.concatenate([g.ravel() for g in gradients])
    flat_reference = np.concatenate([g.ravel() for g in reference])
    per_variable = {}
    for name, g, r in zip(names, gradients, reference):
        scale = np.linalg.norm(r)
        per_variable[name] = float(np.linalg.norm(g - r) / scale) if scale else float(
            np.linalg.norm(g))
    worst = max(per_variable, key=per_variable.get)
    return {
        "relative_error": float(np.linalg.norm(flat - flat_reference)
                                / np.linalg.norm(flat_reference)),
        "worst_variable_error": per_variable[worst],
        "worst_variable": worst,
        "median_variable_error": float(np.median(list(per_variable.values()))),
    }


def gradient_errors(config_name="irevnet301", image_size=64, batch_size=2, seed=0,
                    randomize_batch_norm=False, precision="float32", float64_reference=True):
    """Reversible and plain gradients under `precision`, against each other and float64.

    Runs eagerly (no tracing of the deep graph). Returns a dict with the entries
    `"reversible_vs_plain"`, `"reversible"` and `"plain"` (each against float64), each a
    dict from `compare_gradients`. Without `float64_reference` only `"reversible_vs_plain"`
    (the float64 gradient costs about as much as the two others together at full depth).
    """
    keras.utils.set_random_seed(seed)
    kwargs = train_step.benchmark_model_kwargs(config_name, image_size, 1, reversible=True)
    kwargs["dropout_rate"] = 0.0
    reversible = IRevNet(**dict(kwargs, dtype="float32"))
    if randomize_batch_norm:
        randomize_batch_norms(reversible, seed + 1)
    weights = reversible.get_weights()  # float32 values, exact in float64 as well
    plain = IRevNet(**dict(kwargs, reversible=False, dtype="float32"))
    plain.set_weights(weights)
    plain_float32 = plain
    reversible = reversible.with_dtype_policy(precision)
    plain = plain.with_dtype_policy(precision)

    rng = np.random.default_rng(seed)
    images = rng.standard_normal((batch_size, *kwargs["input_shape"])).astype(np.float32)
    labels = tf.constant(rng.integers(0, kwargs["num_classes"], batch_size), tf.int32)
    names = [v.path for v in reversible.trainable_variables]
    result = {"config": config_name, "image_size": kwargs["input_shape"][0],
              "batch_size": batch_size, "randomize_batch_norm": bool(randomize_batch_norm),
              "blocks": list(kwargs["blocks"]), "precision": precision}
    gradients = {label: loss_gradients(model, tf.constant(images), labels)
                 for label, model in (("reversible", reversible), ("plain", plain))}
    result["reversible_vs_plain"] = compare_gradients(names, gradients["reversible"],
                                                      gradients["plain"])
    if float64_reference:
        expected = loss_gradients(round_trip.float64_copy(plain_float32),
                                  tf.constant(images, tf.float64), labels)
        for label, values in gradients.items():
            result[label] = compare_gradients(names, values, expected)
    return result
