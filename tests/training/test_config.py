"""Training options: flag parsing, early errors that name the flag, and the derived plan."""

import dataclasses

import pytest
from absl import flags

from irevnet_tf.training import config as config_lib
from irevnet_tf.training import flags as training_flags
from irevnet_tf.training import plan as plan_lib
from irevnet_tf.training.errors import FlagError


@dataclasses.dataclass
class Info:
    """ImageNet's DatasetInfo fields as the plan uses them."""
    num_classes: int = 1000
    channels: int = 3
    default_image_size: int = 224
    train_split: str = "train"
    eval_split: str = "validation"
    num_train_examples: int = 1_281_167
    num_eval_examples: int = 50_000


def parse(*argv):
    flag_values = flags.FlagValues()
    training_flags.define_flags(flag_values)
    flag_values(["train_imagenet.py", *argv])
    return training_flags.config_from_flags(flag_values)


def test_defaults_are_the_papers_recipe():
    config = parse("--model_dir=/tmp/run")
    assert (config.config, config.dataset, config.batch_size, config.lr_schedule) == (
        "irevnet301", "imagenet2012", 256, "step")
    assert (config.base_learning_rate, config.momentum, config.weight_decay,
            config.label_smoothing, config.reversible) == (0.1, 0.9, 1e-4, 0.0, True)
    plan = plan_lib.make_plan(config, Info())
    assert plan.total_steps == 600_000
    assert plan.decay_boundaries == (160_000, 320_000, 480_000)
    assert plan.peak_learning_rate == pytest.approx(0.1)
    assert plan.warmup_steps == 0
    assert plan.image_size == 224
    assert plan.eval_steps == 50_000 // 256
    assert config.use_jit() is False


def test_large_batch_scales_rate_and_steps():
    config = parse("--model_dir=/tmp/run", "--batch_size=1024", "--strategy=tpu",
                   "--warmup_epochs=5")
    plan = plan_lib.make_plan(config, Info(), num_replicas=8)
    assert plan.peak_learning_rate == pytest.approx(0.4)
    assert plan.total_steps == 150_000
    assert plan.decay_boundaries == (40_000, 80_000, 120_000)
    assert plan.warmup_steps == round(5 * 1_281_167 / 1024)
    assert config.use_jit() is True


def test_epochs_and_explicit_boundaries():
    config = parse("--model_dir=/tmp/run", "--train_epochs=128", "--lr_decay_epochs=32,64,96",
                   "--eval_batch_size=250")
    plan = plan_lib.make_plan(config, Info())
    steps_per_epoch = 1_281_167 / 256
    assert plan.total_steps == -(-128 * 1_281_167 // 256)
    assert plan.decay_boundaries == tuple(round(e * steps_per_epoch) for e in (32, 64, 96))
    assert plan.eval_steps == 200
    assert config.lr_decay_epochs == (32.0, 64.0, 96.0)


def test_other_dataset_takes_its_image_size():
    info = Info(num_classes=10, default_image_size=32, num_train_examples=50_000,
                num_eval_examples=10_000)
    config = parse("--model_dir=/tmp/run", "--config=irevnet_cifar", "--dataset=cifar10",
                   "--train_steps=1000", "--lr_decay_steps=300,600")
    plan = plan_lib.make_plan(config, info)
    assert (plan.image_size, plan.num_classes, plan.decay_boundaries) == (32, 10, (300, 600))


@pytest.mark.parametrize("argv, flag", [
    (["--batch_size=0"], "--batch_size"),
    (["--config=resnet50"], "--config"),
    (["--train_steps=10", "--train_epochs=1"], "--train_steps"),
    (["--warmup_steps=10", "--warmup_epochs=1"], "--warmup_steps"),
    (["--lr_decay_steps=10,5"], "--lr_decay_steps"),
    (["--lr_decay_steps=10,x"], "--lr_decay_steps"),
    (["--lr_schedule=cosine", "--lr_decay_epochs=30"], "--lr_decay_epochs"),
    (["--momentum=1.5"], "--momentum"),
    (["--weight_decay=-1"], "--weight_decay"),
    (["--label_smoothing=1"], "--label_smoothing"),
    (["--base_learning_rate=0"], "--base_learning_rate"),
    (["--lr_decay_factor=0"], "--lr_decay_factor"),
    (["--steps_per_loop=0"], "--steps_per_loop"),
    (["--keep_checkpoints=0"], "--keep_checkpoints"),
    (["--tpu=my-tpu"], "--tpu"),
    (["--strategy=tpu", "--precision=mixed_float16"], "--precision"),
    (["--image_size=-3"], "--image_size"),
    (["--eval_every=-1"], "--eval_every"),
])
def test_bad_values_name_the_flag(argv, flag):
    with pytest.raises(FlagError, match=f"^{flag}"):
        parse("--model_dir=/tmp/run", *argv)


@pytest.mark.parametrize("argv, message", [
    (["--model_dir=/tmp/run", "--train_steps=5", "--train_epochs=2"],
     "--train_steps and --train_epochs are mutually exclusive"),
    (["--model_dir=/tmp/run", "--config=resnet"], "--config='resnet' is not a known configuration"),
    ([], "--model_dir is required"),
])
def test_flag_messages_as_the_script_prints_them(argv, message):
    """The messages test_entry_point.py once read from five script processes (it keeps two:
    the script prints a FlagError's message whatever raised it)."""
    with pytest.raises(FlagError) as raised:
        parse("--dataset=digits", *argv)
    assert message in str(raised.value)


def test_model_dir_is_required():
    with pytest.raises(FlagError, match="^--model_dir is required"):
        parse()


def test_unknown_config_lists_the_known_ones():
    with pytest.raises(FlagError, match="irevnet301, irevnet_cifar, irevnet_small, irevnet_tiny"):
        parse("--model_dir=/tmp/run", "--config=nope")


def test_enum_flags_are_checked_by_absl():
    with pytest.raises(flags.IllegalFlagValueError, match="strategy"):
        parse("--model_dir=/tmp/run", "--strategy=gpu")


@pytest.mark.parametrize("argv, flag", [
    (["--image_size=100"], "--image_size"),         # irevnet301 down-samples by 32
    (["--batch_size=100"], "--batch_size"),         # 8 replicas
    (["--eval_batch_size=60000"], "--eval_batch_size"),
    (["--warmup_steps=700000"], "--warmup_steps"),
])
def test_plan_errors_name_the_flag(argv, flag):
    config = parse("--model_dir=/tmp/run", *argv)
    with pytest.raises(FlagError, match=f"^{flag}"):
        plan_lib.make_plan(config, Info(), num_replicas=8)


def test_library_options_are_the_flags():
    names = {field.name for field in dataclasses.fields(config_lib.TrainConfig)}
    flag_values = flags.FlagValues()
    training_flags.define_flags(flag_values)
    assert names == set(flag_values)
    with pytest.raises(FlagError, match="batchsize"):
        config_lib.TrainConfig.from_dict({"batchsize": 3})


def test_recipes_are_valid_and_the_paper_recipe_is_the_default():
    from irevnet_tf.training import recipes

    for name in ("IMAGENET_PAPER", "IMAGENET_RELEASE", "CIFAR10_PAPER", "DIGITS_QUICKSTART"):
        config_lib.TrainConfig(model_dir="/tmp/run", **getattr(recipes, name)).validate()
    paper = plan_lib.make_plan(
        config_lib.TrainConfig(model_dir="/tmp/run", **recipes.IMAGENET_PAPER).validate(), Info())
    default = plan_lib.make_plan(parse("--model_dir=/tmp/run"), Info())
    assert paper == default
    release = plan_lib.make_plan(
        config_lib.TrainConfig(model_dir="/tmp/run", **recipes.IMAGENET_RELEASE).validate(),
        Info())
    assert release.decay_boundaries == tuple(round(e * 1_281_167 / 256) for e in (32, 64, 96))


def test_flags_are_made_from_the_settings_declaration():
    """Each TrainConfig field declares its flag: same name, default, help and choices."""
    flag_values = flags.FlagValues()
    training_flags.define_flags(flag_values)
    for field in dataclasses.fields(config_lib.TrainConfig):
        flag = flag_values[field.name]
        assert flag.help.endswith(field.metadata["help"])  # Enums prefix <a|b|c>: .
        default = field.default
        assert flag.default == (list(default) if isinstance(default, tuple) else default)
        if field.metadata["choices"]:
            assert flag.parser.enum_values == list(field.metadata["choices"])
    grouped = [name for _, names in training_flags.groups() for name in names]
    assert sorted(grouped) == sorted(set(flag_values))
    overview = training_flags.groups_overview()
    assert all(f"--{name}" in overview for name in grouped)


@pytest.mark.parametrize("flag, accepted", [
    ("strategy", "default|one_device|mirrored|multi_worker|tpu"),
    ("precision", "float32|mixed_bfloat16|mixed_float16"),
    ("lr_schedule", "step|cosine"),
])
def test_unknown_values_name_the_flag_and_the_accepted_values(flag, accepted):
    with pytest.raises(flags.IllegalFlagValueError, match=f"--{flag}=nope.*{accepted}"):
        parse("--model_dir=/tmp/run", f"--{flag}=nope")
    # The same for library callers, who skip the flag parser.
    with pytest.raises(FlagError, match=f"--{flag}='nope'.*{accepted.replace('|', ', ')}"):
        config_lib.TrainConfig(model_dir="/tmp/run", **{flag: "nope"}).validate()


def test_model_dir_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "model"
    path.write_text("not a directory")
    with pytest.raises(FlagError, match=f"^--model_dir={path} is a file"):
        config_lib.TrainConfig(model_dir=str(path)).validate()


def test_documents_quote_the_paper_recipe_as_declared():
    """README.md, docs/training.md and the trainer's docstring state the defaults in the
    sentence `recipes.PAPER_SUMMARY` makes from the one declaration (whitespace aside), so a
    changed recipe fails here until the documents say the same."""
    import os
    import re

    from irevnet_tf.training import recipes

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    summary = recipes.PAPER_SUMMARY
    assert "momentum 0.9" in summary and "batch 256" in summary and "600k steps" in summary
    for name in ("README.md", os.path.join("docs", "training.md"),
                 os.path.join("trainers", "train_imagenet.py")):
        with open(os.path.join(root, name), encoding="utf-8") as handle:
            text = re.sub(r"\s+", " ", handle.read())
        assert summary in text, name
