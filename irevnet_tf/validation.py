"""Argument checks shared by the whole package: one helper per pattern, one message shape.

Every check raises `error` (ValueError unless the caller passes e.g. `FlagError`) with the
message `"{name} must be {requirement}{hint}, got {value!r}."`, where `name` is what the
caller's users know the argument by (`"Psi: \\`block_size\\`"`, `"--batch_size"`,
`"steps"`) and `requirement` is derived from the bounds unless the caller words it
(`what="a positive integer"`). So the messages stay what each caller said before, and the
rule itself (a bool is not an int; NaN and infinities are not numbers) lives here only.

Keras keeps its argument checks the same way (`keras/src/utils/argument_validation.py`).
This module imports nothing from irevnet_tf and nothing heavy, so any module may use it.
(Tensor checks of the layers, rank and dtype, are in `irevnet_tf.layers.validation`.)
"""

import math
import numbers


def is_int(value, low=None, high=None, numpy_ints=False):
    """True if `value` is an int (not a bool; numpy integers too if `numpy_ints`) in
    [low, high] (a bound of None is open-ended)."""
    # bool is a subclass of int, but True as a batch size is always a mistake.
    kinds = numbers.Integral if numpy_ints else int
    if isinstance(value, bool) or not isinstance(value, kinds):
        return False
    return (low is None or value >= low) and (high is None or value <= high)


def is_number(value, low=None, high=None, low_open=False, high_open=False):
    """True if `value` is a finite real number (int or float, not a bool) in the interval
    from `low` to `high` (closed unless `low_open` / `high_open`; None is unbounded)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    if not math.isfinite(value):
        return False
    if low is not None and not (value > low if low_open else value >= low):
        return False
    return high is None or (value < high if high_open else value <= high)


def _fail(error, name, what, hint, value):
    raise error(f"{name} must be {what}{hint}, got {value!r}.")


def _number_text(number):
    return str(number) if isinstance(number, int) else f"{number:g}"


def _requirement(noun, low, high, low_open=False, high_open=False, interval_noun=None):
    """"an int >= 1", "a number > 0", "in [0, 1)"...: the words for the bounds."""
    if low is not None and high is not None:
        return f"{interval_noun or noun + ' in'} {interval_text(low, high, low_open, high_open)}"
    if low is not None:
        return f"{noun} {'>' if low_open else '>='} {_number_text(low)}"
    if high is not None:
        return f"{noun} {'<' if high_open else '<='} {_number_text(high)}"
    return noun


def check_int(value, name, low=None, high=None, *, what=None, hint="", optional=False,
              numpy_ints=False, error=ValueError):
    """Returns `value` as an int (None if `optional` and None), else raises `error`.

    `what` defaults to "an int >= {low}", "an int <= {high}", "an int in [{low}, {high}]" or
    "an int"; `hint` is appended to it, e.g. " (the end points included)".
    """
    if value is None and optional:
        return None
    if not is_int(value, low, high, numpy_ints):
        _fail(error, name, what or _requirement("an int", low, high), hint, value)
    return int(value)


def check_int_sequence(value, name, low=None, *, what=None, hint="", error=ValueError):
    """Returns `value` as a non-empty tuple of ints >= `low`, else raises `error` (a
    string, a scalar and an empty sequence are refused)."""
    try:
        items = tuple(value) if not isinstance(value, str) else None
    except TypeError:
        items = None
    if not items or not all(is_int(item, low) for item in items):
        if what is None:
            what = "a non-empty sequence of ints" + (f" >= {low}" if low is not None else "")
        _fail(error, name, what, hint, value)
    return items


def interval_text(low, high, low_open=False, high_open=False):
    """"[0, 1)" and the like, as the messages print an interval."""
    return (f"{'(' if low_open else '['}{_number_text(low)}, {_number_text(high)}"
            f"{')' if high_open else ']'}")


def check_number(value, name, low=None, high=None, *, low_open=False, high_open=False,
                 what=None, hint="", optional=False, error=ValueError):
    """Returns `value` as a float (None if `optional` and None), else raises `error`.

    `what` defaults to "a number > 0" / "a number >= 0" (one bound) or "in [low, high)"
    (two bounds, brackets after `low_open` / `high_open`).
    """
    if value is None and optional:
        return None
    if not is_number(value, low, high, low_open, high_open):
        what = what or _requirement("a number", low, high, low_open, high_open,
                                    interval_noun="in")
        _fail(error, name, what, hint, value)
    return float(value)


def check_bool(value, name, *, error=ValueError):
    """Returns `value` if it is True or False (not 0, 1 or a string), else raises `error`."""
    if not isinstance(value, bool):
        _fail(error, name, "True or False", "", value)
    return value


def check_choice(value, name, choices, *, error=ValueError):
    """Returns `value` if it is one of `choices`, else raises `error`:
    "{name}={value!r} is not accepted; choose one of: a, b."."""
    if value not in choices:
        raise error(f"{name}={value!r} is not accepted; choose one of: "
                    f"{', '.join(str(choice) for choice in choices)}.")
    return value


def check_exclusive(name_a, value_a, name_b, value_b, *, error=ValueError):
    """Raises `error` if both values are given (not None)."""
    if value_a is not None and value_b is not None:
        raise error(f"{name_a} and {name_b} are mutually exclusive; give one of them.")
