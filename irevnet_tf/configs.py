"""Named i-RevNet configurations and `build_irevnet`, the one way to build them by name."""

import copy
import inspect

from irevnet_tf.model import IRevNet

# Each entry is the keyword arguments of IRevNet. Facts from the paper and its release.
CONFIGS = {
    # ImageNet bijective i-RevNet-301 "(b)": 125,120,356 parameters; Phi is 7x7x3072.
    "irevnet301": dict(
        blocks=(6, 16, 72, 6), strides=(2, 2, 2, 2), channels=(24, 96, 384, 1536),
        init_ds=2, mult=4, dropout_rate=0.0, num_classes=1000, input_shape=(224, 224, 3)),
    # CIFAR-10 injective model: 3 input channels padded to 32; 6,274,826 parameters.
    "irevnet_cifar": dict(
        blocks=(18, 18, 18), strides=(1, 2, 2), channels=(16, 64, 256),
        init_ds=0, mult=4, dropout_rate=0.1, num_classes=10, input_shape=(32, 32, 3)),
    # The CIFAR layout at 2 blocks per stage: the injective model of the quickstart.
    "irevnet_small": dict(
        blocks=(2, 2, 2), strides=(1, 2, 2), channels=(16, 64, 256),
        init_ds=0, mult=4, dropout_rate=0.0, num_classes=10, input_shape=(32, 32, 3)),
    # A tiny bijective model for fast tests and demos: 32x32x3 -> 4x4x192.
    "irevnet_tiny": dict(
        blocks=(1, 1, 1), strides=(1, 2, 2), channels=(6, 24, 96),
        init_ds=2, mult=2, dropout_rate=0.0, num_classes=10, input_shape=(32, 32, 3)),
}

# Keras layer arguments that IRevNet passes on through **kwargs and a configuration may set.
KERAS_ARGUMENTS = ("name", "dtype")


def model_arguments(model_class=IRevNet):
    """The keyword arguments a configuration may hold: `model_class.__init__`'s named
    parameters (read from its signature, so they are declared once, in the model) and
    KERAS_ARGUMENTS."""
    named = tuple(
        parameter.name for parameter in inspect.signature(model_class.__init__).parameters.values()
        if parameter.name != "self" and parameter.kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY))
    return named + tuple(name for name in KERAS_ARGUMENTS if name not in named)


_ARGUMENTS = model_arguments()


def config_names():
    """The known configuration names, sorted."""
    return sorted(CONFIGS)


def get_config(name, /, **overrides):
    """The IRevNet keyword arguments of configuration `name` with `overrides` applied.

    `name` is positional-only, so that the model's own `name` can be an override.
    """
    if name not in CONFIGS:
        raise ValueError(f"Unknown i-RevNet configuration {name!r}; known configurations: "
                         f"{', '.join(config_names())}.")
    unknown = sorted(set(overrides) - set(_ARGUMENTS))
    if unknown:
        raise ValueError(f"build_irevnet: unknown override(s) {', '.join(unknown)}; accepted: "
                         f"{', '.join(_ARGUMENTS)}.")
    config = copy.deepcopy(CONFIGS[name])
    config.update(overrides)
    config.setdefault("name", name)
    return config


def build_irevnet(name, /, **overrides):
    """Builds the named configuration, e.g. `build_irevnet("irevnet301")` or
    `build_irevnet("irevnet_cifar", num_classes=100)`."""
    return IRevNet(**get_config(name, **overrides))
