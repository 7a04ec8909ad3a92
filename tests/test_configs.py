"""configs: the accepted overrides are IRevNet's constructor arguments, declared once (in
the model), so a new model argument is accepted by name and a removed one refused."""

import inspect

import pytest

from irevnet_tf import IRevNet, configs


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
