"""Every entry point (trainer, quickstart, analysis, exporter, release converter, client) turns
each bad flag value into one line naming the flag, exit status 2, with nothing written, and
exits 0 after `--help`. One process per entry point (tests/entry_point_driver.py)."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers.processes import ROOT, python_env


def _script(*parts):
    return os.path.join(ROOT, *parts)


def _cases(tmp):
    """`{entry point: [(argv, text the one line must contain)]}`; every path lies in `tmp`."""
    a_file = os.path.join(tmp, "a_file")
    missing = os.path.join(tmp, "missing")
    new_dir = os.path.join(tmp, "new")
    return {
        _script("trainers", "train_imagenet.py"): [
            ([f"--model_dir={new_dir}", "--batch_size=abc"], "--batch_size takes an integer"),
            ([f"--model_dir={new_dir}", "--strategy=abc"], "--strategy=abc: value should be "
                                                           "one of <default|"),
            ([f"--model_dir={new_dir}", "--batch_size=0"], "--batch_size must be a positive"),
            ([f"--model_dir={new_dir}", "--dataset=nosuch", "--config=irevnet_tiny"],
             "--dataset='nosuch': Unknown dataset"),
        ],
        "irevnet_tf.quickstart": [
            ([f"--output_dir={new_dir}", "--batch_size=0"], "--batch_size must be a positive"),
            ([f"--output_dir={new_dir}", "--config=irevnet_smal"],
             "--config='irevnet_smal' is not a known configuration"),
            ([f"--output_dir={new_dir}", "--train_epochs=-1"], "--train_epochs must be a "
                                                               "number > 0"),
            ([f"--output_dir={a_file}"], f"--output_dir={a_file} is a file"),
        ],
        "irevnet_tf.analysis.__main__": [
            ([f"--model={missing}", f"--output_dir={new_dir}"], missing),
            ([f"--model={missing}", f"--output_dir={new_dir}", "--pairs=0"],
             "--pairs=0: 0 is not a positive integer"),
            ([f"--model={missing}", f"--output_dir={new_dir}", "--analyses=pictures"],
             "accepted: reconstruction, interpolation, separation"),
        ],
        _script("export", "export_savedmodel.py"): [
            ([f"--model_dir={missing}", f"--export_dir={new_dir}"],
             f"--model_dir={missing} does not exist"),
            ([f"--model_dir={tmp}", f"--export_dir={new_dir}", "--version=0"],
             "--version=0: 0 is not a positive integer"),
            ([f"--model_dir={tmp}", f"--export_dir={new_dir}", "--precision=float8"],
             "--precision=float8: value should be one of <float32|"),
            ([f"--model_dir={tmp}", f"--export_dir={a_file}"], f"--export_dir={a_file} is a "
                                                                "file"),
        ],
        _script("export", "convert_release.py"): [
            ([f"--checkpoint={missing}", f"--output={new_dir}.keras"],
             f"--checkpoint={missing} does not exist"),
            ([f"--checkpoint={a_file}", f"--output={new_dir}.keras", "--overrides=[1]"],
             "--overrides must be a JSON object"),
            ([f"--checkpoint={a_file}", f"--output={new_dir}.keras", "--config=nope"],
             "--config=nope: value should be one of <"),
        ],
        _script("export", "client.py"): [
            (["--timeout=0"], "--timeout=0.0: must be a number of seconds > 0"),
            (["--model_version=0"], "--model_version=0: 0 is not a positive integer"),
            (["--protocol=x"], "--protocol=x: value should be one of <rest|grpc>"),
            ([f"--output={tmp}", "x.npy"], f"--output={tmp} is a directory"),
        ],
    }


@pytest.mark.parametrize("index", range(6))
def test_bad_flags_give_one_line_and_status_2_and_help_exits_0(tmp_path, index):
    tmp = str(tmp_path)
    with open(os.path.join(tmp, "a_file"), "w") as handle:
        handle.write("x")
    entry_point, cases = sorted(_cases(tmp).items())[index]
    result = subprocess.run(
        [sys.executable, "-m", "tests.entry_point_driver", entry_point,
         json.dumps([argv for argv, _ in cases])],
        capture_output=True, text=True, env=python_env(), cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]  # The final --help.
    outcomes = json.loads(result.stdout.splitlines()[0])
    assert len(result.stdout.splitlines()) > 1  # The usage text after the JSON line.
    for (argv, expected), outcome in zip(cases, outcomes):
        lines = outcome["stderr"].splitlines()
        assert outcome["code"] == 2 and len(lines) == 1, (argv, outcome)
        assert lines[0].startswith("error: ") and expected in lines[0], (argv, outcome)
    assert sorted(os.listdir(tmp)) == ["a_file"]  # Nothing written.
