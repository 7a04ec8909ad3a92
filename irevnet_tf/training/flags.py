"""The absl flags of trainers/train_imagenet.py, made from the `TrainConfig` fields.

Each training setting is declared once, as a `TrainConfig` field with its default, help,
`--help` group and accepted values (`irevnet_tf.training.config._setting`); this module
turns every field into a flag of the matching absl type:

    str            -> DEFINE_string (DEFINE_enum when the field lists choices)
    int / float    -> DEFINE_integer / DEFINE_float
    bool           -> DEFINE_bool (--name / --noname)
    Tuple[...]     -> DEFINE_list (comma-separated)

An enum flag given another value fails at parsing with absl's error, which names the flag
and the accepted values (`flag --strategy=x: value should be one of <default|...>`).
`define_flags(flag_values)` then `config_from_flags(flag_values)` parses a command line.
"""

import dataclasses
import typing

from absl import flags

from irevnet_tf.training import config as config_lib

_DEFINERS = {str: flags.DEFINE_string, int: flags.DEFINE_integer,
             float: flags.DEFINE_float, bool: flags.DEFINE_bool}


def _value_type(annotation):
    """`(type, is_list)` of a field annotation: Optional[X] -> X, Tuple[X, ...] -> (X, True)."""
    if typing.get_origin(annotation) is typing.Union:
        annotation = next(arg for arg in typing.get_args(annotation) if arg is not type(None))
    if typing.get_origin(annotation) is tuple:
        return typing.get_args(annotation)[0], True
    return annotation, False


def define_flags(flag_values=flags.FLAGS, names=None, defaults=None):
    """Defines one flag per TrainConfig field on `flag_values` (absl's global FLAGS by
    default); returns the flag names in declaration order.

    Args:
        names: only these fields (another command line that takes some training settings,
            e.g. the quickstart); default all.
        defaults: `{name: default}` replacing the declared defaults (e.g. a recipe's).
    """
    defaults = dict(defaults or {})
    fields = dataclasses.fields(config_lib.TrainConfig)
    unknown = sorted(set(names or ()) - {field.name for field in fields})
    if unknown:
        raise ValueError(f"define_flags: not training settings: {', '.join(unknown)}.")
    defined = []
    for field in fields:
        if names is not None and field.name not in names:
            continue
        metadata = field.metadata
        if "help" not in metadata:
            raise TypeError(f"TrainConfig.{field.name} lacks its flag declaration (use "
                            "config._setting).")
        value_type, is_list = _value_type(field.type)
        default = defaults.get(field.name, field.default)
        if is_list:
            flags.DEFINE_list(field.name, None if default is None else list(default),
                              metadata["help"], flag_values=flag_values)
        elif metadata.get("choices"):
            flags.DEFINE_enum(field.name, default, list(metadata["choices"]), metadata["help"],
                              flag_values=flag_values)
        else:
            _DEFINERS[value_type](field.name, default, metadata["help"],
                                  flag_values=flag_values)
        defined.append(field.name)
    return defined


def groups():
    """`[(title, [field names])]`: the flags by `--help` group, in declaration order."""
    members = {key: [] for key, _ in config_lib.GROUPS}
    for field in dataclasses.fields(config_lib.TrainConfig):
        members[field.metadata["group"]].append(field.name)
    return [(title, members[key]) for key, title in config_lib.GROUPS]


def groups_overview(width=88):
    """A few lines listing the flags by group, for the top of `--help`."""
    lines = ["Flags by group (each is described below, in alphabetical order):"]
    for title, names in groups():
        text = f"{title}: " + ", ".join(f"--{name}" for name in names)
        lines.append(flags.text_wrap(text, length=width, indent="      ",
                                     firstline_indent="  "))
    return "\n".join(lines) + "\n"


def config_from_flags(flag_values=flags.FLAGS):
    """The TrainConfig of parsed flags (validated)."""
    names = [field.name for field in dataclasses.fields(config_lib.TrainConfig)]
    return config_lib.TrainConfig(**{name: flag_values[name].value for name in names}).validate()
