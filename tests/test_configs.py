"""configs: the accepted overrides are IRevNet's constructor arguments, declared once (in
the model), so a new model argument is accepted by name and a removed one refused."""

import inspect
import re

import numpy as np
import pytest
import tensorflow as tf

from irevnet_tf import IRevNet, build_irevnet, configs
from irevnet_tf.training import trainer


class _Model:
    def __init__(self, depth, *args, width=4, ratio=0.5, **kwargs):
        pass


def test_arguments_are_read_from_the_constructor():
    # Named parameters in order (not *args / **kwargs), then Keras' name and dtype.
    assert configs.model_arguments(_Model) == ("depth", "width", "ratio", "name", "dtype")


def test_every_irevnet_argument_is_an_accepted_override():
    parameters = inspect.signature(IRevNet.__init__).parameters
    for name, parameter in parameters.items():
        if name == "self" or parameter.kind is inspect.Parameter.VAR_KEYWORD:
            continue
        value = (configs.CONFIGS["irevnet_tiny"][name] if parameter.default is inspect._empty
                 else parameter.default)
        assert configs.get_config("irevnet_tiny", **{name: value})[name] == value, name
    assert set(configs._ARGUMENTS) == (set(parameters) - {"self", "kwargs"}) | {"name", "dtype"}


def test_configurations_use_only_arguments_and_build():
    for name, config in configs.CONFIGS.items():
        assert set(config) <= set(configs._ARGUMENTS), name
    model = configs.build_irevnet("irevnet_tiny", name="tiny_copy", dtype="float32",
                                  num_classes=3)
    assert (model.name, model.num_classes) == ("tiny_copy", 3)


def test_unknown_override_names_the_accepted_ones():
    with pytest.raises(ValueError, match=r"unknown override\(s\) depth; accepted: blocks, "
                                         r"strides, channels"):
        configs.get_config("irevnet_tiny", depth=3)


def _trainable(model):
    return sum(int(np.prod(variable.shape)) for variable in model.trainable_weights)


def _readme_counts():
    """`{configuration: trainable parameters}` as README.md's "Named configurations" states."""
    from tests.test_readme import readme_text

    line = next(line for line in readme_text().split("\n- ")
                if line.startswith("Named configurations"))
    return {name: int(count.replace(",", "")) for name, count in re.findall(
        r"`(irevnet\w*)` \([^)]*?(\d{1,3}(?:,\d{3})+)", line)}


@pytest.mark.parametrize("name", ["irevnet_cifar", "irevnet_small", "irevnet_tiny"])
def test_readme_parameter_counts_are_the_trainable_ones(name):
    """README, `summary()`'s "Trainable params" and the trainer's log give one count."""
    counts = _readme_counts()
    assert set(counts) == {"irevnet301", "irevnet_cifar", "irevnet_small", "irevnet_tiny"}
    model = build_irevnet(name)
    model(tf.zeros([1, *model.image_shape]))
    assert counts[name] == _trainable(model)
    assert trainer.describe_parameters(model, name) == f"{counts[name]:,} trainable parameters"
    # count_params() adds the batch-norm statistics; README says so beside the numbers.
    statistics = sum(int(np.prod(v.shape)) for v in model.non_trainable_weights)
    assert model.count_params() == counts[name] + statistics
    if name == "irevnet_cifar":  # The other two numbers README quotes.
        from tests.test_readme import readme_text

        wide = build_irevnet(name, num_classes=1000)
        wide(tf.zeros([1, *wide.image_shape]))
        text = " ".join(readme_text().split())  # Wherever the lines break.
        assert f"({model.count_params():,} for irevnet_cifar)" in text
        assert f"irevnet_cifar then has {_trainable(wide):,})" in text


@pytest.mark.slow
def test_readme_parameter_count_of_irevnet301():
    model = build_irevnet("irevnet301")
    model(tf.zeros([1, *model.image_shape]))
    assert _readme_counts()["irevnet301"] == _trainable(model)


def test_trainer_log_says_the_class_count_when_it_is_not_the_configurations():
    """Synthetic data have 1000 classes: irevnet_tiny's classifier then grows by
    (1000 - 10) x (features + 1) parameters, and the log says why the count moved."""
    base = build_irevnet("irevnet_tiny")
    wide = build_irevnet("irevnet_tiny", num_classes=1000)
    for model in (base, wide):
        model(tf.zeros([1, *model.image_shape]))
    features = 2 * base.channels[-1]
    expected = _trainable(base) + (1000 - 10) * (features + 1)
    assert trainer.describe_parameters(wide, "irevnet_tiny") == (
        f"{expected:,} trainable parameters, 1000 classes (irevnet_tiny has 10)")
