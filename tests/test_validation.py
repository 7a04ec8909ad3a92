"""irevnet_tf.validation: each helper accepts what its rule allows and refuses the rest, with
the message shape the package's errors share ("{name} must be ..., got {value!r}.")."""

import math

import numpy as np
import pytest

from irevnet_tf import validation
from irevnet_tf.training.errors import FlagError


@pytest.mark.parametrize("value, low, high, numpy_ints, expected", [
    (3, 1, None, False, True), (1, 1, None, False, True), (0, 1, None, False, False),
    (True, 0, None, False, False), (False, None, None, False, False),
    (2.0, 1, None, False, False), ("2", 1, None, False, False), (None, None, None, False, False),
    (np.int64(3), 1, None, False, False), (np.int64(3), 1, None, True, True),
    (24, 0, 24, False, True), (25, 0, 24, False, False), (-1, None, 5, False, True),
])
def test_is_int(value, low, high, numpy_ints, expected):
    assert validation.is_int(value, low, high, numpy_ints) is expected


@pytest.mark.parametrize("value, kwargs, expected", [
    (0.5, {}, True), (1, {}, True), (True, {}, False), (math.nan, {}, False),
    (math.inf, {}, False), ("0.5", {}, False), (np.float32(0.5), {}, True),
    (0.0, {"low": 0}, True), (0.0, {"low": 0, "low_open": True}, False),
    (1.0, {"low": 0, "high": 1}, True), (1.0, {"low": 0, "high": 1, "high_open": True}, False),
])
def test_is_number(value, kwargs, expected):
    assert validation.is_number(value, **kwargs) is expected


@pytest.mark.parametrize("kwargs, message", [
    ({"low": 1}, "`n` must be an int >= 1, got 0."),
    ({"low": 1, "high": 24}, "`n` must be an int in [1, 24], got 0."),
    ({"high": -1}, "`n` must be an int <= -1, got 0."),
    ({"low": 1, "what": "a positive integer", "hint": " (why)"},
     "`n` must be a positive integer (why), got 0."),
])
def test_check_int_messages(kwargs, message):
    with pytest.raises(ValueError) as raised:
        validation.check_int(0, "`n`", **kwargs)
    assert str(raised.value) == message


def test_check_int_returns_python_int_and_passes_none_when_optional():
    value = validation.check_int(np.int32(4), "n", 1, numpy_ints=True)
    assert value == 4 and type(value) is int
    assert validation.check_int(None, "n", 1, optional=True) is None
    with pytest.raises(ValueError, match="got None"):
        validation.check_int(None, "n", 1)
    with pytest.raises(FlagError, match=r"^--n must be an int >= 1, got True\.$"):
        validation.check_int(True, "--n", 1, error=FlagError)


@pytest.mark.parametrize("value, kwargs, message", [
    (0.0, {"low": 0, "low_open": True}, "x must be a number > 0, got 0.0."),
    (-1, {"low": 0}, "x must be a number >= 0, got -1."),
    (1.0, {"low": 0.0, "high": 1.0, "high_open": True}, "x must be in [0, 1), got 1.0."),
    (math.nan, {"low": 0.0, "high": 1.0, "low_open": True}, "x must be in (0, 1], got nan."),
])
def test_check_number_messages(value, kwargs, message):
    with pytest.raises(ValueError) as raised:
        validation.check_number(value, "x", **kwargs)
    assert str(raised.value) == message


def test_check_int_sequence():
    assert validation.check_int_sequence([1, 2], "`b`", 1) == (1, 2)
    for bad in ([], "12", 3, [1, 0], [1, True]):
        with pytest.raises(ValueError, match=r"^`b` must be a non-empty sequence of ints >= 1"):
            validation.check_int_sequence(bad, "`b`", 1)


def test_choice_bool_and_exclusive():
    assert validation.check_choice("a", "--k", ("a", "b")) == "a"
    with pytest.raises(ValueError) as raised:
        validation.check_choice("c", "--k", ("a", "b"))
    assert str(raised.value) == "--k='c' is not accepted; choose one of: a, b."
    assert validation.check_bool(False, "f") is False
    with pytest.raises(ValueError, match=r"^f must be True or False, got 1\.$"):
        validation.check_bool(1, "f")
    validation.check_exclusive("--a", None, "--b", 2)
    with pytest.raises(FlagError, match="^--a and --b are mutually exclusive"):
        validation.check_exclusive("--a", 1, "--b", 2, error=FlagError)
